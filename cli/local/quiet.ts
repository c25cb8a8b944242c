/**
 * Imported first by the local story: keeps the functions' structured logs to errors (Powertools reads the level
 * when a logger is built, at import) and silences the AWS SDK's notice that releases after early January 2027 need
 * Node 22 (the lockfile pins today's releases, which run on Node 20; Lambda runs nodejs22.x).
 */
process.env.POWERTOOLS_LOG_LEVEL ??= "ERROR";
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
