/**
 * The local end-to-end story on the embedded default (the README's first command, `npm run story`):
 * start the local engines, provision a workspace master key in the HSM (recorded in the event store), let the
 * ingestion pipeline's client generate a document's keys through GenerateDataKeys (wrapped, recorded, returned),
 * encrypt the document, read the keys back through DecryptDataKeys and decrypt it, confirm and delete it through
 * lifecycle events, show that tampering and deleted documents are refused, and stop the engines.
 * It prints what happened, never key material.
 */
import "./local/quiet.js";
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { join } from "node:path";
import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { startDynamoDbLocal } from "./local/dynamodb-local.js";
import { ensureSoftHsmHome, ensureToken } from "./local/softhsm.js";
import { LOCAL_TOKEN_LABEL, stateDir } from "./local/state.js";
import { inProcessTransport } from "./local/in-process-transport.js";
import { createEventStoreTable } from "../core/adapters/dynamodb/table.js";
import { DataKeyClient, DataKeyRequestError } from "../core/client/data-key-client.js";
import { decryptContent, encryptContent } from "../core/content/arquivomate-v2.js";
import { associatedData, decodeWrapped, WrapFormats, type Artifact } from "../core/datakeys/wrap-format.js";
import type { DocumentEncryptionKeysAddedData } from "../core/eventstore/catalogue.js";
import { documentStreamId } from "../core/eventstore/stream-id.js";
import { KeyIntegrityError } from "../core/keystore/errors.js";
import { provisionWorkspaceWithKit } from "../core/workspaces/provision-with-kit.js";
import { KitService } from "../core/kit/kit-service.js";
import { FileSecretVault } from "../core/adapters/file-vault/file-vault.js";
import { Pkcs11KeyStore } from "../core/adapters/pkcs11/pkcs11-key-store.js";
import { RecordingAlerts } from "../core/alerts/alerts.js";
import { DEFAULT_TOTP, totpCode } from "../core/factors/totp.js";
import { readPinFile } from "./local/softhsm.js";
import { keyStoreFromEnv } from "../functions/shared/key-store.js";
import { eventStoreFromEnv } from "../functions/shared/event-store.js";
import { handler as lifecycle } from "../functions/document-lifecycle/handler.js";
import { parseKeyId } from "../core/keystore/key-id.js";

const WORKSPACE = process.env.AMK_STORY_WORKSPACE ?? "demo";
const step = (n: number, text: string) => console.log(`\n[${n}] ${text}`);
const fact = (k: string, v: string | number) => console.log(`    ${k.padEnd(24)} ${v}`);
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex").slice(0, 16);

async function main(): Promise<boolean> {
  console.log("ArquivoMate Keys: local story on the embedded default (SoftHSM2 + DynamoDB Local)");

  step(1, "Starting the local engines");
  const home = await ensureSoftHsmHome(join(stateDir(), "hsm"));
  process.env.SOFTHSM2_CONF = home.configPath;
  const token = await ensureToken(home, LOCAL_TOKEN_LABEL);
  // Both tokens exist before the PKCS#11 library is initialised: SoftHSM2 reads its token list at C_Initialize.
  const replacementToken = await ensureToken(home, `${LOCAL_TOKEN_LABEL}-spare`);
  fact("SoftHSM2 token", `${token.label} (${home.configPath})`);
  const ddb = await startDynamoDbLocal();
  fact("DynamoDB Local", `${ddb.endpoint} (in memory)`);
  const table = "amk-story-events";
  const client = new DynamoDBClient({
    endpoint: ddb.endpoint,
    region: "us-east-1",
    credentials: { accessKeyId: "local", secretAccessKey: "local" },
  });
  await createEventStoreTable(client, table);
  fact("event-store table", table);
  // The functions read their configuration from the environment, as in Lambda.
  Object.assign(process.env, {
    AMK_PKCS11_LIBRARY: token.libraryPath,
    AMK_PKCS11_TOKEN_LABEL: token.label,
    AMK_PKCS11_PIN_FILE: token.pinFile,
    AMK_EVENT_TABLE: table,
    AMK_DYNAMODB_ENDPOINT: ddb.endpoint,
  });
  const keyStore = await keyStoreFromEnv();
  const events = eventStoreFromEnv();
  const vault = await FileSecretVault.open(join(stateDir(), "vault"));
  const kits = new KitService({ keyStore, events, vault, alerts: new RecordingAlerts() });
  const replacement = await Pkcs11KeyStore.open({
    config: { libraryPath: replacementToken.libraryPath, tokenLabel: replacementToken.label },
    pin: () => readPinFile(replacementToken.pinFile),
  });
  const pipeline = new DataKeyClient({ transport: inProcessTransport });
  const reader = new DataKeyClient({ transport: inProcessTransport });
  const checks: [string, boolean][] = [];

  try {
    step(
      2,
      `Provisioning workspace "${WORKSPACE}": master key and drill key in the HSM, an administrator, recovery kit v1`,
    );
    // The story's administrator: a passphrase and a TOTP authenticator that live only in this process.
    const admin = {
      adminId: "admin",
      passphrase: `${randomBytes(12).toString("base64url")} story passphrase`,
    };
    const { state, enrollments, kit } = await provisionWorkspaceWithKit(
      { keyStore, events, kits },
      { workspaceId: WORKSPACE, administrators: [{ ...admin, factor: { type: "totp" } }] },
    );
    const seed = new URL(enrollments[0]!.totpUri!).searchParams.get("secret")!;
    const active = state.keys.find((k) => k.keyId === state.activeKeyId)!;
    fact("active master key", active.keyId);
    fact("key check value (KCV)", active.kcv);
    fact("drill key", `${state.drill?.drillKeyId} (RSA-3072, private key never leaves the HSM)`);
    fact(
      "administrator",
      `${admin.adminId}: passphrase + TOTP (QR code shown once at enrollment; not printed here)`,
    );
    fact("recovery kit", `v${kit.kitVersion} in the vault (.amk/vault), fingerprint ${kit.fingerprint}`);
    fact("recorded", `MasterKeyCreated ... KitIssued at ws-${WORKSPACE} v${state.version}`);

    step(3, "The ingestion pipeline asks GenerateDataKeys for a new document's keys");
    const documentId = randomUUID();
    const artifacts: Artifact[] = ["file", "metadata", "thumb", "preview", "archive"];
    const generated = await pipeline.generate({
      workspaceId: WORKSPACE,
      documentId,
      artifacts,
      idempotencyKey: `ingest-${documentId}`,
    });
    const replay = await pipeline.generate({
      workspaceId: WORKSPACE,
      documentId,
      artifacts,
      idempotencyKey: `ingest-${documentId}`,
    });
    fact("document", documentId);
    fact("DEKs", `${generated.artifacts.length}, one per artifact, 32 bytes each (never printed)`);
    fact("wrapped under", generated.keyId);
    fact(
      "wrap record",
      `DocumentEncryptionKeysAdded v${generated.recordVersion}, ${String(generated.record.WrapFormat)}`,
    );
    fact(
      "retry, same request",
      replay.recordVersion === generated.recordVersion ? "same record, same keys" : "DIFFERENT",
    );
    checks.push(["replay returns the same record", replay.recordVersion === generated.recordVersion]);

    step(4, "The pipeline encrypts the document with its file key (ArquivoMate content format 2)");
    const content = Buffer.from(`ArquivoMate story document ${documentId}\n`.repeat(20));
    const sealed = await pipeline.withDataKey(
      { workspaceId: WORKSPACE, documentId, artifact: "file" },
      (dek) => encryptContent(dek, content),
    );
    pipeline.forget(WORKSPACE, documentId);
    fact("content", `${content.length} bytes, sha256 ${sha(content)}...`);
    fact("ciphertext", `${sealed.length} bytes`);
    fact("pipeline key cache", `${pipeline.size} keys held after forget()`);
    const stored = await lifecycle({
      id: randomUUID(),
      source: "arquivomate.ingestion",
      "detail-type": "DocumentStored",
      detail: { workspaceId: WORKSPACE, documentId },
    });
    fact("DocumentStored event", stored.recorded ? "recorded" : "not recorded");

    step(5, "A reader gets the keys back through DecryptDataKeys and decrypts the document");
    const { events: stream } = await events.readStream(documentStreamId(WORKSPACE, documentId));
    fact("document stream", stream.map((e) => `v${e.version} ${e.type}`).join(", "));
    const opened = await reader.withDataKey({ workspaceId: WORKSPACE, documentId, artifact: "file" }, (dek) =>
      decryptContent(dek, sealed),
    );
    const same = opened.equals(content);
    fact(
      "decrypted",
      `${opened.length} bytes, sha256 ${sha(opened)}... ${same ? "(matches)" : "(MISMATCH)"}`,
    );
    checks.push(["document decrypts with the keys read back", same]);

    step(
      6,
      "Tampering: a wrapped DEK moved to another document, or with a flipped bit, is refused by the HSM",
    );
    const record = stream.find((e) => e.type === "DocumentEncryptionKeysAdded")!
      .data as DocumentEncryptionKeysAddedData;
    const entry = record.Artifacts.find((a) => a.Artifact === "file")!;
    const keyId = parseKeyId(record.KeyId);
    const wrapped = decodeWrapped(entry);
    const flipped = { nonce: wrapped.nonce, ciphertext: Buffer.from(wrapped.ciphertext).fill(1, 0, 1) };
    for (const [label, w, doc] of [
      ["moved to another document", wrapped, randomUUID()],
      ["flipped ciphertext bit", flipped, documentId],
    ] as const) {
      const aad = associatedData(WrapFormats.AmkGcmV1, {
        workspaceId: WORKSPACE,
        documentId: doc,
        artifact: "file",
        keyId,
      });
      try {
        (await keyStore.unwrapDataKey(keyId, w, aad)).fill(0);
        fact(label, "ACCEPTED (this is a bug)");
        checks.push([label, false]);
      } catch (err) {
        fact(label, `refused: ${(err as Error).name}`);
        checks.push([label, err instanceof KeyIntegrityError]);
      }
    }

    step(7, "The document is deleted: its keys are never handed out again");
    await lifecycle({
      id: randomUUID(),
      source: "arquivomate.ingestion",
      "detail-type": "DocumentDeleted",
      detail: { workspaceId: WORKSPACE, documentId },
    });
    reader.forget(WORKSPACE, documentId);
    try {
      await reader.withDataKey({ workspaceId: WORKSPACE, documentId, artifact: "file" }, () => undefined);
      fact("DecryptDataKeys", "ANSWERED (this is a bug)");
      checks.push(["deleted document refused", false]);
    } catch (err) {
      const code = err instanceof DataKeyRequestError ? err.code : (err as Error).name;
      fact("DecryptDataKeys", `refused: ${code}`);
      checks.push(["deleted document refused", code === "DOCUMENT_DELETED"]);
    }
    const projection = await events.getDocumentProjection(WORKSPACE, documentId);
    fact("projection", `status ${projection?.status}, key ${projection?.keyId}`);
    fact(
      "census",
      `${await events.countDocumentsByKeyId(WORKSPACE, active.keyId)} live documents on ${active.keyId}`,
    );

    step(
      8,
      "Drill: the kit opened through its drill slot inside the HSM (no passphrase, no key leaves the HSM)",
    );
    const drill = await kits.drillCheckKit(WORKSPACE);
    for (const m of drill.masterKeys) {
      fact(m.keyId, `kit ${m.kitKcv} / unwrapped in the HSM ${m.hsmKcv} / live ${m.liveKcv ?? "-"}`);
    }
    fact(
      "drill result",
      drill.ok ? "kit intact, covers every master key" : `FAILED: ${drill.problems.join("; ")}`,
    );
    checks.push(["drill check", drill.ok]);

    step(9, "Recovery: the administrator opens the kit (passphrase + TOTP code) into a spare HSM token");
    const code = await totpCode(seed, DEFAULT_TOTP, Math.floor(Date.now() / 1000));
    const recovered = await kits.recoverMasterKeys(
      {
        workspaceId: WORKSPACE,
        adminId: admin.adminId,
        passphrase: admin.passphrase,
        factor: { type: "totp", code },
      },
      replacement,
    );
    for (const m of recovered.masterKeys) {
      fact(m.keyId, `${m.imported ? "imported into" : "already in"} ${replacementToken.label}, KCV ${m.kcv}`);
    }
    const sameKeys = recovered.masterKeys.every((m) =>
      state.keys.some((k) => k.keyId === m.keyId && k.kcv === m.kcv),
    );
    fact("recovered keys", sameKeys ? "match the recorded KCVs" : "MISMATCH");
    checks.push(["recovered keys match", sameKeys]);
  } finally {
    step(10, "Stopping the local engines");
    await replacement.close();
    pipeline.dispose();
    reader.dispose();
    await keyStore.close();
    client.destroy();
    await ddb.stop();
    fact("engines", "stopped (the SoftHSM2 token stays in .amk/ for the next run)");
  }

  const failed = checks.filter(([, ok]) => !ok).map(([name]) => name);
  console.log(
    failed.length === 0
      ? "\nStory complete: workspace provisioned with its recovery kit; a document's keys generated, recorded, read back and decrypted; tampering and deleted documents refused; the kit checked in the HSM and the master keys recovered into a spare token."
      : `\nStory FAILED: ${failed.join("; ")}`,
  );
  return failed.length === 0;
}

main().then(
  (ok) => {
    process.exitCode = ok ? 0 : 1;
  },
  (err: unknown) => {
    const e = err as { name?: string; message?: string; code?: string };
    console.error(
      `\nstory failed: ${e.name ?? "Error"}${e.code ? ` (${e.code})` : ""}: ${e.message ?? String(err)}`,
    );
    process.exitCode = 1;
  },
);
