/**
 * Provisioning a workspace with its recovery kit: the first master key version (HSM), the drill key pair (HSM),
 * the administrators' enrollment (identities sealed under passphrase and factor; TOTP secrets in the vault), and
 * kit version 1 in the vault, and (given the data-key service) the canary documents. Every step is recorded in the workspace stream and can be retried.
 */
import type { KeyStore } from "../keystore/key-store.js";
import type { EventStore } from "../eventstore/event-store.js";
import { KitService, type Enrollment, type FactorChoice, type IssuedKit } from "../kit/kit-service.js";
import { ensureCanaries } from "../canaries/canaries.js";
import type { DataKeyService } from "../datakeys/data-keys.js";
import { provisionWorkspace, readWorkspace, type WorkspaceState } from "./workspace.js";

export interface AdministratorToEnroll {
  readonly adminId: string;
  readonly passphrase: string;
  readonly factor: FactorChoice;
}

export async function provisionWorkspaceWithKit(
  deps: {
    keyStore: KeyStore;
    events: EventStore;
    kits: KitService;
    /** With it, the workspace's canary documents are created too (drills and recoveries decrypt them). */
    dataKeys?: DataKeyService;
    now?: () => Date;
  },
  input: { workspaceId: string; administrators: readonly AdministratorToEnroll[]; canaries?: number },
): Promise<{ state: WorkspaceState; enrollments: Enrollment[]; kit: IssuedKit }> {
  if (input.administrators.length === 0)
    throw new RangeError("at least one administrator is enrolled at provisioning");
  await provisionWorkspace(deps, input.workspaceId);
  await deps.kits.ensureDrillKey(input.workspaceId);
  const enrollments: Enrollment[] = [];
  for (const a of input.administrators) {
    enrollments.push(await deps.kits.enrollAdministrator({ workspaceId: input.workspaceId, ...a }));
  }
  const kit = await deps.kits.issueKit(input.workspaceId, {
    admins: enrollments.map((e) => e.recipient),
    reason: "provisioning",
  });
  if (deps.dataKeys) {
    await ensureCanaries(
      { dataKeys: deps.dataKeys, events: deps.events, ...(deps.now ? { now: deps.now } : {}) },
      input.workspaceId,
      input.canaries,
    );
  }
  return { state: await readWorkspace(deps.events, input.workspaceId), enrollments, kit };
}
