/**
 * Toy workflow, first step: validates a batch of documents and plans one item per document, in id order, with the
 * page count it will be charged for. A batch may not hold the same document twice.
 */
export interface ToyDocument {
  readonly id: string;
  readonly pages: number;
  /** Fault injection for the workflow tests: process-item fails this many times with FlakyUpstreamError. */
  readonly flakyFailures?: number;
  /** Fault injection: process-item refuses the item with PoisonItemError (not retryable). */
  readonly poison?: boolean;
}

export interface PlanBatchEvent {
  readonly batchId: string;
  readonly documents: readonly ToyDocument[];
}

export interface PlannedItem extends ToyDocument {
  readonly chargedPages: number;
}

export interface PlanBatchResult {
  readonly batchId: string;
  readonly count: number;
  readonly items: PlannedItem[];
}

/** Every document is charged for at least one page. */
export const MIN_CHARGED_PAGES = 1;

export const handler = async (event: PlanBatchEvent): Promise<PlanBatchResult> => {
  if (typeof event.batchId !== "string" || event.batchId === "") throw new TypeError("batchId is required");
  const seen = new Set<string>();
  for (const d of event.documents) {
    if (seen.has(d.id)) throw new RangeError(`document ${d.id} appears twice in the batch`);
    seen.add(d.id);
  }
  const items = [...event.documents]
    .sort((a, b) => a.id.localeCompare(b.id))
    .map((d) => ({ ...d, chargedPages: Math.max(MIN_CHARGED_PAGES, d.pages) }));
  return { batchId: event.batchId, count: items.length, items };
};
