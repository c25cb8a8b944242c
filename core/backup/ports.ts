/**
 * What backups need from an event store besides the `EventStore` port: the list of streams (export) and a write
 * path that keeps events' original ids, versions and times (import). `DynamoDbEventStore` implements both.
 */
import type { EventStore } from "../eventstore/event-store.js";
import type { StoredEvent } from "../eventstore/events.js";
import type { BackupScope } from "./format.js";

export interface StreamHead {
  readonly streamId: string;
  /** The stream's version when its head was read: events 1..version are all stored. */
  readonly version: number;
}

/** Where an export reads from. */
export interface BackupSource extends Pick<EventStore, "readEvents" | "readStream"> {
  /** The table (or store) name recorded in the manifest. */
  readonly tableName: string;
  /**
   * Every stream in the scope with its current version, read strongly consistently, in pages, in no particular
   * order, each stream exactly once. A workspace's scope is its workspace stream and each of its document streams.
   */
  listStreamHeads(scope: BackupScope): AsyncIterable<readonly StreamHead[]>;
}

/** A run of consecutive events of one stream, as stored (`version`, `eventId`, `recordedAt` ... kept). */
export interface ImportRun {
  readonly streamId: string;
  /** Consecutive versions; the first continues the stream as stored in the target (1 for a stream not there). */
  readonly events: readonly StoredEvent[];
}

/** Where an import writes. */
export interface BackupTarget {
  /** The table (or store) name, for messages. */
  readonly tableName: string;
  /** True when the store holds nothing at all (not one item of any kind). */
  isEmpty(): Promise<boolean>;
  /**
   * Writes the runs (each to a different stream) with their events' original metadata, conditional on each stream
   * being exactly at the version before the run (not existing for a run from version 1), maintaining what appends
   * maintain (stream heads, event-id markers, document projections and their census entries). Each chunk of up to
   * `MAX_EVENTS_PER_APPEND` events of a run is atomic; a call is not. A failed condition is an event-store error
   * (`ExpectedVersionConflictError`, `EventIdConflictError`) and writes nothing of that chunk.
   */
  importEvents(runs: readonly ImportRun[]): Promise<void>;
}
