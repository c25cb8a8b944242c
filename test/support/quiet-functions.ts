/**
 * Imported FIRST by the reliability suite: the functions' Powertools loggers are built at import with the level
 * read here, and their metrics would print an EMF line per shard task. Thousands of injected faults make thousands
 * of warnings; the suite reports through its own summary lines instead.
 */
process.env.POWERTOOLS_LOG_LEVEL = "SILENT";
process.env.POWERTOOLS_METRICS_DISABLED = "true";
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
