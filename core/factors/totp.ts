/**
 * TOTP (RFC 6238) for the kit's second factor: SHA-1 or SHA-256, 30-second steps, 6 or 8 digits, one step of drift.
 * otplib does the arithmetic; this module fixes the parameters the kit allows and reports the time step a code
 * matched, so the caller can refuse a code used before.
 */
import { generate, generateSecret, generateURI, verify } from "otplib";
import { InvalidInputError } from "../shared/errors.js";

export interface TotpParams {
  readonly algorithm: "SHA1" | "SHA256";
  readonly digits: 6 | 8;
  readonly period: 30;
}

export const DEFAULT_TOTP: TotpParams = { algorithm: "SHA1", digits: 6, period: 30 };

const lib = (p: TotpParams) =>
  ({ algorithm: p.algorithm === "SHA1" ? "sha1" : "sha256", digits: p.digits, period: p.period }) as const;

/** A fresh base32 seed: 20 bytes for SHA-1, 32 for SHA-256 (RFC 4226 recommends the hash's output length). */
export function newTotpSeed(params: TotpParams): string {
  return generateSecret({ length: params.algorithm === "SHA1" ? 20 : 32 });
}

/** The `otpauth://` URI an authenticator app scans. It contains the seed: show it once, never log it. */
export function totpUri(input: {
  issuer: string;
  account: string;
  seed: string;
  params: TotpParams;
}): string {
  return generateURI({
    issuer: input.issuer,
    label: input.account,
    secret: input.seed,
    ...lib(input.params),
  });
}

export async function totpCode(seed: string, params: TotpParams, epochSeconds: number): Promise<string> {
  return generate({ secret: seed, ...lib(params), epoch: epochSeconds });
}

/** Checks a code at `epochSeconds` with one step of drift either way; returns the matched time step. */
export async function verifyTotp(
  seed: string,
  code: string,
  params: TotpParams,
  epochSeconds: number,
): Promise<{ valid: false } | { valid: true; timeStep: number }> {
  if (typeof code !== "string" || !new RegExp(`^[0-9]{${params.digits}}$`).test(code)) {
    throw new InvalidInputError(`a code is ${params.digits} digits`);
  }
  const r = await verify({
    secret: seed,
    token: code,
    ...lib(params),
    epoch: epochSeconds,
    epochTolerance: params.period,
  });
  if (!r.valid) return { valid: false };
  return { valid: true, timeStep: Math.floor(epochSeconds / params.period) + (r.delta ?? 0) };
}
