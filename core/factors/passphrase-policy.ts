/**
 * The passphrase policy of kit slots. The passphrase is the only thing an administrator remembers for the worst
 * day: long beats complex (NIST SP 800-63B). Rules: at least 15 characters; at least 8 distinct characters; not
 * mostly one repeated run or a keyboard/alphabet sequence; not containing the workspace or administrator id; not a
 * well-known phrase. Messages say what is wrong, never echo the passphrase.
 */
import { WeakPassphraseError } from "../kit/errors.js";

const MIN_LENGTH = 15;
const COMMON = [
  "password",
  "passphrase",
  "qwerty",
  "letmein",
  "welcome",
  "iloveyou",
  "admin",
  "arquivomate",
  "correcthorsebatterystaple",
  "123456",
];
const SEQUENCES = ["abcdefghijklmnopqrstuvwxyz", "qwertyuiopasdfghjklzxcvbnm", "01234567890"];

export function checkPassphrase(
  passphrase: string,
  context: { workspaceId?: string; adminId?: string } = {},
): void {
  if (typeof passphrase !== "string") throw new WeakPassphraseError("the passphrase must be text");
  const p = passphrase.normalize("NFC");
  const chars = [...p];
  if (chars.length < MIN_LENGTH) {
    throw new WeakPassphraseError(
      `the passphrase has ${chars.length} characters; use at least ${MIN_LENGTH} (several unrelated words are easiest to remember)`,
    );
  }
  if (chars.length > 1024) throw new WeakPassphraseError("the passphrase is longer than 1024 characters");
  if (new Set(chars.map((c) => c.toLowerCase())).size < 8) {
    throw new WeakPassphraseError(
      "the passphrase repeats too few different characters; use at least 8 different ones",
    );
  }
  const lower = p.toLowerCase();
  // What is left once keyboard/alphabet runs (4+ characters) and well-known passwords are taken out must still be
  // a passphrase of its own (at least 8 characters).
  let rest = lower.replace(/[^\p{L}\p{N}]/gu, "");
  for (const w of COMMON) rest = rest.split(w).join("");
  for (const seq of [...SEQUENCES, ...SEQUENCES.map((q) => [...q].reverse().join(""))]) {
    for (let len = seq.length; len >= 4; len--) {
      for (let i = 0; i + len <= seq.length; i++) rest = rest.split(seq.slice(i, i + len)).join("");
    }
  }
  rest = rest.replace(/(.)\1{2,}/gu, "$1");
  if ([...rest].length < 8) {
    throw new WeakPassphraseError(
      "the passphrase is mostly a well-known password, a keyboard or alphabet run, or repeated characters; choose unrelated words",
    );
  }
  for (const [what, id] of [
    ["workspace", context.workspaceId],
    ["administrator", context.adminId],
  ] as const) {
    if (id && id.length >= 3 && lower.includes(id.toLowerCase())) {
      throw new WeakPassphraseError(`the passphrase contains the ${what} id; choose something unrelated`);
    }
  }
}
