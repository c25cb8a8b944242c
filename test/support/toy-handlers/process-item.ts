/**
 * Toy workflow, per item (inside the Map): prices one planned document and signs the price with a receipt MAC
 * (HMAC-SHA-256 under the secret key in TOY_RECEIPT_KEY, hex: the secret the tests look for in the execution
 * history, where it must never appear). Fault injection for the tests: an item with
 * `flakyFailures: n` fails its first n attempts (counted per batch and document in this module) with the retryable
 * FlakyUpstreamError; an item with `poison: true` always fails with PoisonItemError.
 */
import { createHmac } from "node:crypto";
import { FlakyUpstreamError, PoisonItemError } from "./errors.js";
import type { PlannedItem } from "./plan-batch.js";

export interface ProcessItemEvent {
  readonly batchId: string;
  readonly index: number;
  readonly item: PlannedItem;
}

export interface ProcessItemResult {
  readonly id: string;
  readonly index: number;
  readonly cents: number;
  /** First 16 hex digits of HMAC-SHA-256(key, `<batchId>/<id>/<cents>`). */
  readonly receipt: string;
}

export function receiptFor(key: Buffer, batchId: string, id: string, cents: number): string {
  return createHmac("sha256", key).update(`${batchId}/${id}/${cents}`).digest("hex").slice(0, 16);
}

export const CENTS_PER_PAGE = 7;

const attempts = new Map<string, number>();

export const handler = async (event: ProcessItemEvent): Promise<ProcessItemResult> => {
  const { item } = event;
  const key = `${event.batchId}/${item.id}`;
  const attempt = (attempts.get(key) ?? 0) + 1;
  attempts.set(key, attempt);
  if (item.poison === true) throw new PoisonItemError(`document ${item.id} cannot be processed`);
  if (attempt <= (item.flakyFailures ?? 0)) {
    throw new FlakyUpstreamError(`upstream busy for document ${item.id} (attempt ${attempt})`);
  }
  const keyHex = process.env.TOY_RECEIPT_KEY;
  if (keyHex === undefined || !/^[0-9a-f]{64}$/.test(keyHex))
    throw new TypeError("TOY_RECEIPT_KEY is not set");
  const cents = item.chargedPages * CENTS_PER_PAGE;
  const receipt = receiptFor(Buffer.from(keyHex, "hex"), event.batchId, item.id, cents);
  return { id: item.id, index: event.index, cents, receipt };
};
