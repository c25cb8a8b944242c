import { InvalidInputError } from "../shared/errors.js";

/**
 * A master key version's id, `ws-<workspaceId>/mk/<version>` (e.g. `ws-acme/mk/3`). It is the HSM object's label
 * and id, and the `KeyId` written into every wrap record.
 */
export type KeyId = string & { readonly __brand: "KeyId" };

export const WORKSPACE_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;
const KEY_ID_PATTERN = /^ws-([A-Za-z0-9][A-Za-z0-9_-]{0,63})\/mk\/([1-9][0-9]{0,8})$/;

export interface MasterKeyVersionRef {
  readonly workspaceId: string;
  readonly version: number;
}

export function assertWorkspaceId(workspaceId: string): void {
  if (typeof workspaceId !== "string" || !WORKSPACE_ID_PATTERN.test(workspaceId)) {
    throw new InvalidInputError(
      "workspace id must be 1-64 characters of letters, digits, '-' or '_', starting with a letter or digit",
      { context: { workspaceId: previewOf(workspaceId, 80) } },
    );
  }
}

export function masterKeyId(workspaceId: string, version: number): KeyId {
  assertWorkspaceId(workspaceId);
  if (!Number.isInteger(version) || version < 1 || version > 999_999_999) {
    throw new InvalidInputError("master key version must be an integer from 1 to 999999999", {
      context: { workspaceId, version },
    });
  }
  return `ws-${workspaceId}/mk/${version}` as KeyId;
}

export function parseKeyId(value: string): KeyId {
  if (typeof value !== "string" || !KEY_ID_PATTERN.test(value)) {
    throw new InvalidInputError("key id must look like ws-<workspace>/mk/<version>", {
      context: { keyId: previewOf(value, 100) },
    });
  }
  return value as KeyId;
}

export function describeKeyId(keyId: KeyId): MasterKeyVersionRef {
  const m = KEY_ID_PATTERN.exec(keyId);
  if (!m) throw new InvalidInputError("not a key id", { context: { keyId } });
  return { workspaceId: m[1] as string, version: Number(m[2]) };
}

/** The label prefix shared by every master key version of a workspace. */
export function workspaceKeyPrefix(workspaceId: string): string {
  assertWorkspaceId(workspaceId);
  return `ws-${workspaceId}/mk/`;
}

/** A workspace's drill key pair (RSA, private key inside the HSM): `ws-<workspaceId>/drill/<n>`. */
export type DrillKeyId = string & { readonly __brand: "DrillKeyId" };
const DRILL_KEY_ID_PATTERN = /^ws-([A-Za-z0-9][A-Za-z0-9_-]{0,63})\/drill\/([1-9][0-9]{0,8})$/;

export function drillKeyId(workspaceId: string, n: number): DrillKeyId {
  assertWorkspaceId(workspaceId);
  if (!Number.isInteger(n) || n < 1 || n > 999_999_999) {
    throw new InvalidInputError("drill key number must be an integer from 1 to 999999999", {
      context: { n },
    });
  }
  return `ws-${workspaceId}/drill/${n}` as DrillKeyId;
}

export function parseDrillKeyId(value: string): DrillKeyId {
  if (typeof value !== "string" || !DRILL_KEY_ID_PATTERN.test(value)) {
    throw new InvalidInputError("drill key id must look like ws-<workspace>/drill/<n>", {
      context: { drillKeyId: previewOf(value, 100) },
    });
  }
  return value as DrillKeyId;
}

/** A value for an error's context that never throws (a string's start, else its type). */
function previewOf(value: unknown, max: number): string {
  return typeof value === "string" ? value.slice(0, max) : `<${value === null ? "null" : typeof value}>`;
}
