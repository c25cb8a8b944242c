/**
 * Hostile input for the recovery kit reader (`readKit`: binary and armour, core/kit/format.ts), property-based.
 * Only the keyless checks (spec section 6, steps 1-6) run here: opening a slot costs an Argon2id run of 64 MiB, so
 * the keyed steps stay with the vectors (test/integration/kit-vectors.int.test.ts). Every rejection must be a
 * `KitError` naming the right check; nothing may be accepted unless it is still the same valid kit.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { describe, it } from "node:test";
import fc from "fast-check";
import {
  KitError,
  KitHeaderError,
  KitIntegrityError,
  KitUnsupportedVersionError,
} from "../../core/kit/errors.js";
import { MAGIC, MAX_ARMOUR_CHARS, readKit, SECTION } from "../../core/kit/format.js";
import {
  applyBytes,
  applyJson,
  assertNoPollution,
  assertTyped,
  byteMutation,
  describeJsonMutation,
  jsonMutation,
  outcomeOf,
  holds,
  probe,
  thrown,
  type Json,
} from "./hostile-harness.js";

const vectors = JSON.parse(readFileSync(new URL("../vectors/kit-vectors.json", import.meta.url), "utf8")) as {
  vectors: {
    name: string;
    expect: string;
    encoding: "binary" | "armour";
    kit: string;
    fingerprint?: string;
  }[];
};
const good = vectors.vectors.filter((v) => v.expect === "success");
const binaries = good.filter((v) => v.encoding === "binary").map((v) => Buffer.from(v.kit, "base64"));
const armours = good.filter((v) => v.encoding === "armour").map((v) => v.kit);
assert.ok(
  binaries.length >= 3 && armours.length >= 1,
  "kit-vectors.json holds success kits of both encodings",
);

const BEGIN = "-----BEGIN AMK RECOVERY KIT-----";
const END = "-----END AMK RECOVERY KIT-----";

// ---- an independent section codec (docs/kit-format.md section 2) ---------------------------------------------

interface Section {
  type: number;
  payload: Buffer;
}

function checksum(type: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head[0] = type;
  head.writeUInt32BE(payload.length, 1);
  return createHash("sha256").update(head).update(payload).digest().subarray(0, 16);
}

function encodeSections(sections: readonly Section[], version = 1): Buffer {
  return Buffer.concat([
    MAGIC,
    Buffer.from([version]),
    ...sections.flatMap((s) => {
      const head = Buffer.alloc(5);
      head[0] = s.type;
      head.writeUInt32BE(s.payload.length, 1);
      return [head, s.payload, checksum(s.type, s.payload)];
    }),
  ]);
}

function decodeSections(kit: Buffer): Section[] {
  const out: Section[] = [];
  for (let at = MAGIC.length + 1; at < kit.length;) {
    const length = kit.readUInt32BE(at + 1);
    out.push({ type: kit[at]!, payload: kit.subarray(at + 5, at + 5 + length) });
    at += 5 + length + 16;
  }
  return out;
}

function armourText(bytes: Buffer, headers: readonly string[]): string {
  return [BEGIN, ...headers, "", ...(bytes.toString("base64").match(/.{1,64}/g) ?? []), END, ""].join("\n");
}

const headersOf = (text: string) => text.split("\n").slice(1, 5);

/** The classes and checks a refusal may carry, by where the kit was hurt. */
const ENVELOPE_CHECKS = new Set(["magic", "version", "structure", "section-checksum"]);

function assertKitError(err: unknown, checks: ReadonlySet<string>): asserts err is KitError {
  assertTyped(err, [KitError]);
  assert.ok(
    checks.has((err as KitError).check),
    `check ${(err as KitError).check} not in ${[...checks].join(", ")}`,
  );
}

describe("kit reader: arbitrary input", () => {
  it("refuses arbitrary bytes with a KitError (plain, behind the magic, behind magic and version)", async (t) => {
    const p = probe(t);
    const prefix = fc.constantFrom(
      Buffer.alloc(0),
      MAGIC,
      Buffer.concat([MAGIC, Buffer.from([1])]),
      Buffer.concat([MAGIC, Buffer.from([1, SECTION.header])]),
    );
    holds(
      fc.property(prefix, fc.uint8Array({ maxLength: 4096 }), (pre, bytes) => {
        const input = Buffer.concat([pre, bytes]);
        const err = p.time(() => thrown(() => readKit(input)));
        p.count(outcomeOf(err));
        assertKitError(err, ENVELOPE_CHECKS);
      }),
      p.params,
    );
    p.report();
  });

  it("refuses arbitrary text, and arbitrary text inside armour lines, with KitHeaderError", async (t) => {
    const p = probe(t);
    const line = fc.string({ unit: "binary", maxLength: 80 });
    const text = fc.oneof(
      fc.string({ unit: "binary", maxLength: 4096 }),
      fc.array(line, { maxLength: 20 }).map((ls) => [BEGIN, ...ls, END].join("\n")),
      fc
        .tuple(fc.array(line, { minLength: 4, maxLength: 4 }), fc.base64String({ maxLength: 600 }))
        .map(([hs, data]) => [BEGIN, ...hs, "", data, END].join("\r\n")),
    );
    holds(
      fc.property(text, (s) => {
        const err = p.time(() => thrown(() => readKit(s)));
        p.count(outcomeOf(err));
        assertTyped(err, [KitHeaderError, KitUnsupportedVersionError, KitIntegrityError]);
      }),
      p.params,
    );
    p.report();
  });

  it("refuses well-framed kits of random sections (checksums right) by their structure or fields", async (t) => {
    const p = probe(t);
    const payload = fc.oneof(
      fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)),
      fc.jsonValue({ maxDepth: 4 }).map((v) => Buffer.from(JSON.stringify(v) ?? "null", "utf8")),
      fc
        .dictionary(
          fc.constantFrom("format", "version", "workspaceId", "type", "slotId", "__proto__"),
          fc.jsonValue({ maxDepth: 2 }),
        )
        .map((v) => Buffer.from(JSON.stringify(v), "utf8")),
    );
    const section = fc.record({
      type: fc.oneof(fc.constantFrom(SECTION.header, SECTION.slot, SECTION.body), fc.nat({ max: 255 })),
      payload,
    });
    // Mostly the right frame (header, 1-3 slots, body; version 1), so that the JSON checks are reached.
    const framed = fc
      .tuple(
        payload,
        fc.array(payload, { minLength: 1, maxLength: 3 }),
        fc.uint8Array({ minLength: 28, maxLength: 80 }),
      )
      .map(([h, slots, body]) => [
        { type: SECTION.header, payload: h },
        ...slots.map((s) => ({ type: SECTION.slot, payload: s })),
        { type: SECTION.body, payload: Buffer.from(body) },
      ]);
    const sections = fc.oneof(
      { weight: 3, arbitrary: framed },
      { weight: 1, arbitrary: fc.array(section, { maxLength: 6 }) },
    );
    const version = fc.oneof(
      { weight: 9, arbitrary: fc.constant(1) },
      { weight: 1, arbitrary: fc.nat({ max: 255 }) },
    );
    holds(
      fc.property(sections, version, (list, v) => {
        const err = p.time(() => thrown(() => readKit(encodeSections(list, v))));
        p.count(outcomeOf(err));
        assertKitError(err, new Set([...ENVELOPE_CHECKS, "header", "slot", "algorithms"]));
      }),
      p.params,
    );
    p.report();
  });
});

describe("kit reader: mutations of valid kits", () => {
  it("refuses a valid binary kit with one flipped bit, naming the check its position implies", async (t) => {
    const p = probe(t);
    const arb = fc
      .nat({ max: binaries.length - 1 })
      .chain((k) => fc.tuple(fc.constant(k), fc.nat({ max: binaries[k]!.length - 1 }), fc.nat({ max: 7 })));
    holds(
      fc.property(arb, ([k, at, bit]) => {
        const kit = Buffer.from(binaries[k]!);
        kit[at] = kit[at]! ^ (1 << bit);
        const err = p.time(() => thrown(() => readKit(kit)));
        p.count(outcomeOf(err));
        if (at < MAGIC.length) {
          assertTyped(err, [KitHeaderError]);
          assert.equal((err as KitError).check, "magic");
        } else if (at === MAGIC.length) {
          assertTyped(err, [KitUnsupportedVersionError]);
          assert.equal((err as KitError).check, "version");
        } else {
          assertTyped(err, [KitIntegrityError, KitHeaderError]);
          const check = (err as KitError).check;
          assert.ok(
            (err instanceof KitIntegrityError && check === "section-checksum") ||
              (err instanceof KitHeaderError && check === "structure"),
            `byte ${at}: ${outcomeOf(err)}`,
          );
        }
      }),
      p.params,
    );
    p.report();
  });

  it("refuses truncated, extended, cut and overwritten kits, binary and armoured (accepts only an unchanged kit)", async (t) => {
    const p = probe(t);
    const arb = fc
      .nat({ max: binaries.length - 1 })
      .chain((k) => fc.tuple(fc.constant(k), byteMutation(binaries[k]!.length), fc.boolean()));
    holds(
      fc.property(arb, ([k, m, armoured]) => {
        const original = binaries[k]!;
        const mutated = applyBytes(original, m);
        // Armoured: the original kit's header lines around the mutated bytes (the lines must then disagree).
        const input = armoured ? armourText(mutated, headersOf(armours[0]!)) : mutated;
        const err = p.time(() => thrown(() => readKit(input)));
        p.count(outcomeOf(err));
        if (err === undefined) {
          assert.ok(mutated.equals(original), `${m.kind} accepted a changed kit`);
          return;
        }
        assertKitError(err, new Set([...ENVELOPE_CHECKS, ...(armoured ? ["armour"] : [])]));
      }),
      p.params,
    );
    p.report();
  });

  it("refuses header and slot fields deleted, retyped, huge, deeply nested or added (`__proto__` too), checksums right", async (t) => {
    const p = probe(t);
    const base = binaries[0]!;
    const sections = decodeSections(base);
    const editable = sections
      .map((s, i) => ({ i, s }))
      .filter(({ s }) => s.type === SECTION.header || s.type === SECTION.slot)
      .map(({ i, s }) => ({ i, value: JSON.parse(s.payload.toString("utf8")) as Json }));
    const arb = fc
      .nat({ max: editable.length - 1 })
      .chain((e) =>
        fc.tuple(
          fc.constant(e),
          jsonMutation(editable[e]!.value, ["delete", "retype", "huge-string", "deep", "add-key"]),
        ),
      );
    holds(
      fc.property(arb, ([e, m]) => {
        const { i, value } = editable[e]!;
        const changed = sections.map((s) => ({ ...s }));
        changed[i]!.payload = Buffer.from(JSON.stringify(applyJson(value, m)), "utf8");
        const err = p.time(() => thrown(() => readKit(encodeSections(changed))));
        p.count(outcomeOf(err));
        assertNoPollution();
        if (err === undefined) assert.fail(`accepted after ${describeJsonMutation(m)}`);
        assertTyped(err, [KitHeaderError, KitUnsupportedVersionError]);
        const check = (err as KitError).check;
        const expected = i === 0 ? ["header", "algorithms", "structure"] : ["slot", "structure"];
        assert.ok(expected.includes(check), `${describeJsonMutation(m)} in section ${i}: ${outcomeOf(err)}`);
      }),
      p.params,
    );
    p.report();
  });

  it("accepts the same kit written with other JSON layout (key order, whitespace): still valid, same fields", async (t) => {
    const p = probe(t, Math.min(2_000, Number(process.env.AMK_PROPERTY_RUNS ?? 2_000)));
    const base = binaries[1]!;
    const sections = decodeSections(base);
    const reference = readKit(base);
    const reorder = (v: Json, flips: boolean[], at = { i: 0 }): Json => {
      if (Array.isArray(v)) return v.map((x) => reorder(x, flips, at));
      if (v === null || typeof v !== "object") return v;
      const keys = Object.keys(v);
      if (flips[at.i++ % flips.length]) keys.reverse();
      return Object.fromEntries(keys.map((k) => [k, reorder(v[k]!, flips, at)]));
    };
    holds(
      fc.property(
        fc.array(fc.boolean(), { minLength: 1, maxLength: 16 }),
        fc.nat({ max: 4 }),
        (flips, indent) => {
          const changed = sections.map((s) =>
            s.type === SECTION.body
              ? s
              : {
                  ...s,
                  payload: Buffer.from(
                    JSON.stringify(
                      reorder(JSON.parse(s.payload.toString("utf8")) as Json, flips),
                      null,
                      indent,
                    ),
                  ),
                },
          );
          const kit = p.time(() => readKit(encodeSections(changed)));
          assert.deepEqual(kit.header, reference.header);
          assert.deepEqual(kit.slots, reference.slots);
        },
      ),
      p.params,
    );
    p.report();
  });

  it("armour: refuses changed header lines and data; accepts only other line ends, whitespace, or a change the base64 decodes away", async (t) => {
    const p = probe(t);
    const text = armours[0]!;
    const lines = text.replace(/\n$/, "").split("\n");
    const bytes = readKit(text).bytes;
    const dataLines = lines.map((_, i) => i).filter((i) => i >= 6 && i < lines.length - 1);
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=*-_ .";
    type Edit =
      | { kind: "layout"; crlf: boolean; lead: string; trail: string; pad: string }
      | { kind: "header-char"; line: number; col: number; ch: string }
      | { kind: "data-char"; line: number; col: number; ch: string }
      | { kind: "drop-line"; line: number }
      | { kind: "dup-line"; line: number };
    const space = fc.constantFrom("", " ", "\n", "\r\n", "\t", "  \n\n");
    const edit: fc.Arbitrary<Edit> = fc.oneof(
      fc.record({
        kind: fc.constant("layout" as const),
        crlf: fc.boolean(),
        lead: space,
        trail: space,
        pad: fc.constantFrom("", " ", "\t", "   "),
      }),
      fc.record({
        kind: fc.constant("header-char" as const),
        line: fc.integer({ min: 0, max: 5 }),
        col: fc.nat({ max: 80 }),
        ch: fc.string({ unit: "binary", minLength: 1, maxLength: 1 }),
      }),
      fc.record({
        kind: fc.constant("data-char" as const),
        line: fc.constantFrom(...dataLines),
        col: fc.nat({ max: 63 }),
        ch: fc.constantFrom(...alphabet),
      }),
      fc.record({ kind: fc.constant("drop-line" as const), line: fc.nat({ max: lines.length - 1 }) }),
      fc.record({ kind: fc.constant("dup-line" as const), line: fc.nat({ max: lines.length - 1 }) }),
    );
    const apply = (e: Edit): string => {
      const ls = [...lines];
      switch (e.kind) {
        case "layout":
          return e.lead + ls.map((l) => e.pad + l + e.pad).join(e.crlf ? "\r\n" : "\n") + e.trail;
        case "header-char":
        case "data-char": {
          const l = ls[e.line]!;
          const col = Math.min(e.col, Math.max(0, l.length - 1));
          ls[e.line] = l.slice(0, col) + e.ch + l.slice(col + 1);
          return ls.join("\n");
        }
        case "drop-line":
          ls.splice(e.line, 1);
          return ls.join("\n");
        case "dup-line":
          ls.splice(e.line, 0, ls[e.line]!);
          return ls.join("\n");
      }
    };
    holds(
      fc.property(edit, (e) => {
        const changed = apply(e);
        const err = p.time(() => thrown(() => readKit(changed)));
        p.count(`${e.kind}: ${outcomeOf(err)}`);
        if (err === undefined) {
          // Only what leaves the same kit: the layout, an edit that changes nothing, or base64 bits that are ignored.
          const kit = readKit(changed);
          assert.ok(kit.bytes.equals(bytes), `${e.kind} accepted another kit`);
          return;
        }
        if (e.kind === "layout") assert.fail(`layout change refused: ${outcomeOf(err)}`);
        assertKitError(err, new Set([...ENVELOPE_CHECKS, "armour"]));
      }),
      p.params,
    );
    p.report();
  });
});

describe("kit reader: size limits and time", () => {
  it("refuses kits at and over every size limit quickly, with the structure check", (t) => {
    const cases: [string, Uint8Array | string, string][] = [
      [
        "1 MiB + 1 byte",
        Buffer.concat([MAGIC, Buffer.from([1]), Buffer.alloc(1024 * 1024 - 8)]),
        "structure",
      ],
      [
        "a section claiming 4 GiB",
        Buffer.concat([MAGIC, Buffer.from([1, 1, 0xff, 0xff, 0xff, 0xff])]),
        "structure",
      ],
      [
        "a section of 65,537 bytes",
        encodeSections([{ type: 1, payload: Buffer.alloc(65_537, 0x20) }]),
        "structure",
      ],
      [
        "33 slots",
        encodeSections([
          decodeSections(binaries[0]!)[0]!,
          ...Array.from({ length: 33 }, () => decodeSections(binaries[0]!)[1]!),
          decodeSections(binaries[0]!).at(-1)!,
        ]),
        "structure",
      ],
      [
        "armour of 3 MB of base64",
        `${BEGIN}\nWorkspace: a\nKit: b\nIssued: c\nFingerprint: d\n\n${"QUFB".repeat(750_000)}\n${END}`,
        "armour",
      ],
      ["3 MB of one line", "-".repeat(3_000_000), "armour"],
      [
        "a header nested 20,000 deep",
        encodeSections([
          { type: 1, payload: Buffer.from("[".repeat(20_000) + "]".repeat(20_000)) },
          decodeSections(binaries[0]!)[1]!,
          decodeSections(binaries[0]!).at(-1)!,
        ]),
        "header",
      ],
    ];
    for (const [name, input, check] of cases) {
      const t0 = performance.now();
      const err = thrown(() => readKit(input));
      const ms = performance.now() - t0;
      assertKitError(err, new Set([check]));
      t.diagnostic(`${name}: ${outcomeOf(err)} in ${ms.toFixed(1)} ms`);
    }
    // The armour bound leaves room for the largest kit: white space up to it is still read, one more is not.
    const text = armours[0]!;
    const padded = text + " ".repeat(MAX_ARMOUR_CHARS - text.length);
    assert.equal(readKit(padded).fingerprint, readKit(text).fingerprint);
    assertKitError(
      thrown(() => readKit(`${padded} `)),
      new Set(["armour"]),
    );
    const biggest = Math.ceil(((Math.ceil((1024 * 1024) / 3) * 4) / 64) * 66);
    assert.ok(MAX_ARMOUR_CHARS >= biggest + 400, "a kit of 1 MiB, armoured with CRLF, fits");
  });
});
