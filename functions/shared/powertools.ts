/**
 * Powertools for AWS Lambda around every handler: the Tracer opens a `## <name>` subsegment per invocation (with
 * the cold-start and service annotations, and the error when it throws), and Metrics publishes a cold-start metric.
 * The Logger is each handler's own. Outside Lambda (tests, the local runner) the Tracer is disabled and only the
 * handler runs. Handlers never put event payloads into traces: only the name, annotations and errors.
 */
import { Metrics } from "@aws-lambda-powertools/metrics";
import { Tracer } from "@aws-lambda-powertools/tracer";

const serviceName = process.env.POWERTOOLS_SERVICE_NAME ?? "amk-keys";
export const tracer = new Tracer({ serviceName, captureHTTPsRequests: false });
const metrics = new Metrics({
  namespace: process.env.POWERTOOLS_METRICS_NAMESPACE ?? "ArquivoMateKeys",
  serviceName,
});
const inLambda = process.env.AWS_LAMBDA_FUNCTION_NAME !== undefined;

export function instrumented<A extends unknown[], R>(
  name: string,
  handler: (...args: A) => Promise<R>,
): (...args: A) => Promise<R> {
  return async (...args: A): Promise<R> => {
    const parent = tracer.getSegment();
    const sub = parent?.addNewSubsegment(`## ${name}`);
    if (sub) tracer.setSegment(sub);
    tracer.annotateColdStart();
    tracer.addServiceNameAnnotation();
    try {
      return await handler(...args);
    } catch (err) {
      // Only the error's name and message, as the handlers' own error answers carry (never a payload).
      if (sub) tracer.addErrorAsMetadata(err as Error, true);
      throw err;
    } finally {
      if (sub && parent) {
        sub.close();
        tracer.setSegment(parent);
      }
      if (inLambda) {
        metrics.captureColdStartMetric(name);
        metrics.publishStoredMetrics();
      }
    }
  };
}
