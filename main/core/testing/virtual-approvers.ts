/**
 * Virtual approvers for headless test automation: approvers whose security key is the project's
 * software authenticator, held by the server, so CI can drive real WebAuthn ceremonies (real
 * structures, real P-256 signatures, the virtual AAGUID in the attestation) without a person.
 * They exist only in the test key domain: the directory refuses them anywhere else, and their
 * keys can never register for a real approver. On a team hub they are written to the team
 * directory (for every hub), like any approver there; their keys are held by the hub that
 * registered them (its data directory), so a virtual approver decides on that hub, or has one more
 * key registered on each hub it decides on (registerKey).
 */
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AuthenticationResponseJSON } from '@simplewebauthn/server';
import { VirtualAuthenticator } from './virtual-authenticator.js';
import type { ApproverDirectory, ApproverRecord } from '../approvals/approver-directory.js';
import type { TeamApprovers } from '../approvals/team-approvers.js';
import { CountersignError } from '../../../shared/errors.js';
import { parseStrictJson } from '../../../shared/canonical-json.js';
import type { TokenDomain } from '../../../shared/approval-token.js';

/** What the ceremony engine (approvals/ceremony.ts) offers for one tap, as far as a key reads it. */
export interface CeremonyOptions {
  challenge: string;
  rpId?: string;
  allowCredentials?: Array<{ id: string }>;
  userVerification?: string;
}

/** The part of the approval service a virtual approver needs. */
export interface CeremonyService {
  startCeremony(input: { requestId: string; approverId: string; verdict: 'approve' | 'deny' }): Promise<{ options: CeremonyOptions }>;
  submitCeremony(input: { requestId: string; approverId: string; response: AuthenticationResponseJSON; reason?: string }): Promise<unknown>;
}

const STATE_FILE = 'virtual-approvers.json';

export class VirtualApprovers {
  /** One software authenticator per virtual key, as each security key is its own device. */
  private readonly authenticators: VirtualAuthenticator[];
  private readonly file: string;

  /** On a team hub: the team directory's writes (the hub's own directory is a replica that refuses local writes). */
  private readonly team: Pick<TeamApprovers, 'add' | 'issueRegistrationCode'> | undefined;

  constructor(
    private readonly directory: ApproverDirectory,
    private readonly service: CeremonyService,
    options: { dataDir: string; domain: TokenDomain; team?: Pick<TeamApprovers, 'add' | 'issueRegistrationCode'> | undefined },
  ) {
    this.team = options.team;
    if (options.domain !== 'test')
      throw new CountersignError('virtual_approver_refused', 'virtual approvers exist only in the headless test key domain');
    this.file = join(options.dataDir, STATE_FILE);
    this.authenticators = existsSync(this.file) ? loadState(parseStrictJson(readFileSync(this.file, 'utf8'))) : [];
  }

  /** Create a virtual approver and register one virtual security key for it. */
  async create(input: { id: string; displayName: string; groups: string[] }): Promise<ApproverRecord> {
    if (this.team !== undefined) {
      // One team directory write: the approver and their first code, for every hub.
      const { approver, registration } = await this.team.add({ ...input, virtual: true }, { issuedBy: 'automation' });
      await this.registerWithCode(approver.id, registration!.code);
      return this.directory.get(approver.id);
    }
    const approver = this.directory.addApprover({ ...input, virtual: true });
    await this.registerKey(approver.id);
    return approver;
  }

  /** Register one more virtual key for an existing virtual approver (one person, two keys; on a team hub, a key this hub holds). */
  async registerKey(approverId: string): Promise<string> {
    const { code } =
      this.team === undefined
        ? this.directory.issueRegistrationCode(approverId, 'automation')
        : await this.team.issueRegistrationCode(approverId, 'automation');
    return this.registerWithCode(approverId, code);
  }

  private async registerWithCode(approverId: string, code: string): Promise<string> {
    const options = await this.directory.beginRegistration(approverId, code);
    const authenticator = new VirtualAuthenticator();
    const response = authenticator.createCredential({
      rpId: this.directory.rpId,
      origin: this.origin(),
      challenge: options.challenge,
      user: options.user,
      userVerification: 'required',
      excludeCredentials: (options.excludeCredentials ?? []).map((c) => c.id),
    });
    const credential = await this.directory.finishRegistration(approverId, response);
    this.authenticators.push(authenticator);
    this.persist();
    return credential.credentialId;
  }

  /** Run a whole approval (or denial) ceremony as `approverId`, as a person tapping their key. */
  async decide(input: { requestId: string; approverId: string; verdict: 'approve' | 'deny'; reason?: string }): Promise<unknown> {
    const { options } = await this.service.startCeremony({
      requestId: input.requestId,
      approverId: input.approverId,
      verdict: input.verdict,
    });
    const response = this.answer(options);
    return this.service.submitCeremony({
      requestId: input.requestId,
      approverId: input.approverId,
      response,
      ...(input.reason === undefined ? {} : { reason: input.reason }),
    });
  }

  /** Tap a virtual key the ceremony engine offered (an approval or an admin action), as a browser would. */
  answer(options: CeremonyOptions): AuthenticationResponseJSON {
    const allowed = (options.allowCredentials ?? []).map((c) => c.id);
    const authenticator = this.authenticators.find((a) => allowed.some((id) => a.hasCredential(id)));
    if (authenticator === undefined)
      throw new CountersignError('credential_unknown', 'this virtual approver holds none of the keys the ceremony accepts');
    const response = authenticator.getAssertion({
      rpId: options.rpId ?? this.directory.rpId,
      origin: this.origin(),
      challenge: options.challenge,
      allowCredentials: allowed,
      userVerification:
        options.userVerification === 'discouraged' ? 'discouraged' : options.userVerification === 'preferred' ? 'preferred' : 'required',
    });
    this.persist(); // the signature counter moved
    return response;
  }

  private origin(): string {
    const origin = this.directory.origins[0];
    if (origin === undefined) throw new CountersignError('config_invalid', 'no WebAuthn origin is configured');
    return origin;
  }

  /** Keys and counters survive a restart of the headless run (0600, written atomically). */
  private persist(): void {
    const tmp = `${this.file}.tmp`;
    writeFileSync(tmp, JSON.stringify({ version: 1, authenticators: this.authenticators.map((a) => a.exportState()) }), { mode: 0o600 });
    renameSync(tmp, this.file);
  }
}

function loadState(value: unknown): VirtualAuthenticator[] {
  const state = value as { version?: unknown; authenticators?: unknown };
  if (typeof state !== 'object' || state === null || state.version !== 1 || !Array.isArray(state.authenticators)) {
    throw new CountersignError('config_invalid', `the virtual approver state file is malformed`);
  }
  return state.authenticators.map((a) => VirtualAuthenticator.importState(a));
}
