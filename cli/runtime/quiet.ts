/**
 * Imported first by cli/amk.ts (ES modules evaluate imports before the importing module's body): the functions'
 * Powertools loggers and metrics write JSON to stdout in Lambda; in the CLI they stay silent (AMK_DEBUG=1 shows the
 * logs) so that stdout carries only the command's output.
 */
process.env.POWERTOOLS_LOG_LEVEL ??= process.env.AMK_DEBUG ? "DEBUG" : "SILENT";
process.env.POWERTOOLS_METRICS_DISABLED ??= "true";
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
