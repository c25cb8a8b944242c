/**
 * A loopback HTTP server for driving a real AWS SDK v3 client (pointed at it with `endpoint`) against recorded
 * response shapes: it records every request (method, path, headers, body) and answers with what the test's handler
 * returns, typically a fixture file under test/fixtures/<service>/.
 */
import { readFileSync } from "node:fs";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";

export interface RecordedRequest {
  readonly method: string;
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
}

export interface ReplayResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  /** A string is sent as is; anything else as JSON. */
  readonly body: unknown;
}

export interface ReplayServer {
  readonly endpoint: string;
  readonly requests: RecordedRequest[];
  /** What to answer; replaced by each test. */
  handler: (request: RecordedRequest, index: number) => ReplayResponse;
  close(): Promise<void>;
}

export async function startReplayServer(): Promise<ReplayServer> {
  const requests: RecordedRequest[] = [];
  const state: ReplayServer = {
    endpoint: "",
    requests,
    handler: () => ({ status: 500, headers: {}, body: "no handler" }),
    close: async () => {},
  };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const recorded: RecordedRequest = {
        method: req.method ?? "",
        path: req.url ?? "",
        headers: req.headers,
        body: Buffer.concat(chunks).toString("utf8"),
      };
      requests.push(recorded);
      let answer: ReplayResponse;
      try {
        answer = state.handler(recorded, requests.length - 1);
      } catch (err) {
        answer = { status: 599, headers: { "content-type": "text/plain" }, body: String(err) };
      }
      const body = typeof answer.body === "string" ? answer.body : JSON.stringify(answer.body);
      res.writeHead(answer.status, answer.headers).end(body);
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return Object.assign(state, {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise<void>((r) => server.close(() => r())),
  });
}

/** Reads a fixture `{status, headers, body}` (JSON) from test/fixtures/<folder>/<name>.json. */
export function jsonFixture(folder: string, name: string): ReplayResponse {
  return JSON.parse(
    readFileSync(new URL(`../fixtures/${folder}/${name}.json`, import.meta.url), "utf8"),
  ) as ReplayResponse;
}

/** Reads a fixture file as text (e.g. an XML body) from test/fixtures/<folder>/<file>. */
export function textFixture(folder: string, file: string): string {
  return readFileSync(new URL(`../fixtures/${folder}/${file}`, import.meta.url), "utf8");
}

/** Fake static credentials: the loopback server does not check signatures. */
export const FAKE_CREDENTIALS = {
  accessKeyId: "AKIAIOSFODNN7EXAMPLE",
  secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
} as const;
