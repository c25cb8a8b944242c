/**
 * The event bus in local mode: every published event is appended as one JSON line to a file (0600), which the CLI
 * and the tests read. EventBridge in AWS (core/adapters/eventbridge).
 */
import { appendFile, mkdir, readFile } from "node:fs/promises";
import { dirname } from "node:path";
import { EVENT_SOURCE, type BusEvent, type EventBus } from "../../bus/event-bus.js";

export interface LoggedBusEvent extends BusEvent {
  readonly source: string;
  readonly at: string;
}

export class FileEventBus implements EventBus {
  constructor(private readonly path: string) {}

  async publish(events: readonly BusEvent[]): Promise<void> {
    if (events.length === 0) return;
    await mkdir(dirname(this.path), { recursive: true, mode: 0o700 });
    const at = new Date().toISOString();
    const lines = events.map((e) =>
      JSON.stringify({
        source: EVENT_SOURCE,
        at,
        id: e.id,
        detailType: e.detailType,
        workspaceId: e.workspaceId,
        detail: { WorkspaceId: e.workspaceId, ...e.detail },
      }),
    );
    await appendFile(this.path, lines.join("\n") + "\n", { mode: 0o600 });
  }
}

/** The events in a local bus log (malformed lines are skipped); empty when the file does not exist. */
export async function readBusLog(path: string): Promise<LoggedBusEvent[]> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
  const out: LoggedBusEvent[] = [];
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    try {
      out.push(JSON.parse(line) as LoggedBusEvent);
    } catch {
      // a torn last line: skip it
    }
  }
  return out;
}
