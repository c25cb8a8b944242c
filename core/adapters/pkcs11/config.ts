import { z } from "zod";
import { KeyStoreConfigError } from "../../keystore/errors.js";

/** Returns the HSM user PIN (CloudHSM: `<crypto-user>:<password>`), read from a secret, never from plain config. */
export type PinSource = () => Promise<string>;

export const Pkcs11ConfigSchema = z.object({
  /** Path of the PKCS#11 library: SoftHSM2 locally, `/opt/cloudhsm/lib/libcloudhsm_pkcs11.so` on AWS. */
  libraryPath: z.string().min(1, "libraryPath is required"),
  /** Label of the token (slot) that holds the keys. */
  tokenLabel: z
    .string()
    .min(1, "tokenLabel is required")
    .max(32, "a PKCS#11 token label has at most 32 characters"),
  /** Sessions kept open per process; concurrent callers beyond it wait for a free session. */
  poolSize: z.number().int().min(1).max(64).default(4),
  /** Attempts per operation for transient HSM failures (including the first). */
  maxAttempts: z.number().int().min(1).max(10).default(4),
  backoffBaseMs: z.number().int().min(0).max(10_000).default(20),
  backoffMaxMs: z.number().int().min(0).max(60_000).default(1_000),
  /**
   * CK_GCM_PARAMS layout: `v240` carries ulIvBits (PKCS#11 2.40 and later: SoftHSM 2.6, CloudHSM); `v220` is the
   * older layout without it.
   */
  gcmParams: z.enum(["v240", "v220"]).default("v240"),
});

export type Pkcs11Config = z.output<typeof Pkcs11ConfigSchema>;
export type Pkcs11ConfigInput = z.input<typeof Pkcs11ConfigSchema>;

export function parsePkcs11Config(input: unknown): Pkcs11Config {
  const r = Pkcs11ConfigSchema.safeParse(input);
  if (!r.success) {
    const issues = r.error.issues.map((i) => `${i.path.join(".") || "(config)"}: ${i.message}`).join("; ");
    throw new KeyStoreConfigError(`invalid PKCS#11 configuration: ${issues}`);
  }
  return r.data;
}

/**
 * Reads the key store configuration from the environment:
 * AMK_PKCS11_LIBRARY, AMK_PKCS11_TOKEN_LABEL, and optionally AMK_PKCS11_POOL_SIZE, AMK_PKCS11_MAX_ATTEMPTS,
 * AMK_PKCS11_GCM_PARAMS. The PIN is not configuration: see `PinSource`.
 */
export function pkcs11ConfigFromEnv(env: NodeJS.ProcessEnv = process.env): Pkcs11Config {
  const num = (name: string): number | undefined => {
    const v = env[name];
    if (v === undefined || v === "") return undefined;
    const n = Number(v);
    if (!Number.isFinite(n))
      throw new KeyStoreConfigError(`${name} must be a number`, { context: { [name]: v } });
    return n;
  };
  return parsePkcs11Config({
    libraryPath: env.AMK_PKCS11_LIBRARY,
    tokenLabel: env.AMK_PKCS11_TOKEN_LABEL,
    poolSize: num("AMK_PKCS11_POOL_SIZE"),
    maxAttempts: num("AMK_PKCS11_MAX_ATTEMPTS"),
    gcmParams: env.AMK_PKCS11_GCM_PARAMS || undefined,
  });
}
