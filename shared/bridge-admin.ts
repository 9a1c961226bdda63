/**
 * The schemas of the desk's admin rows of the bridge table (shared/bridge-table.ts): the first
 * run, admin actions confirmed by a key tap, and the approver directory with its keys as the
 * admin console shows them (public metadata only: never a public key or attestation object).
 */
import { z } from 'zod';
import { adminActionSchema } from './admin-actions.js';
import { authenticationOptionsSchema, registrationCodeSchema } from './bridge.js';

const text = (max: number) => z.string().max(max);
const aaguid = z.string().regex(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);

/** The display name a person is created with (the directory checks it again). */
export const displayNameSchema = text(200).min(1);

export const firstRunStateSchema = z.strictObject({ open: z.boolean(), approvers: z.int().min(0) });
export type FirstRunStateView = z.infer<typeof firstRunStateSchema>;

export const firstAdminSchema = z.strictObject({
  approverId: text(128).min(1),
  code: registrationCodeSchema,
  expiresAt: z.int().min(0),
});
export type FirstAdmin = z.infer<typeof firstAdminSchema>;

export const adminCeremonySchema = z.strictObject({ options: authenticationOptionsSchema, action: adminActionSchema });
export type AdminCeremony = z.infer<typeof adminCeremonySchema>;

/** A tapped admin action waiting for a second admin (the admin quorum, approvals.adminQuorum: 2). */
export const adminProposalSchema = z.strictObject({
  id: text(64).min(1),
  action: adminActionSchema,
  proposedBy: text(128).min(1),
  createdAt: z.int().min(0),
  expiresAt: z.int().min(0),
});
export type AdminProposal = z.infer<typeof adminProposalSchema>;

/**
 * What a submitted admin action did: performed (`result`), or, under the admin quorum, stored as
 * a `proposal` that a second admin confirms (then `result` is empty).
 */
export const adminOutcomeSchema = z.strictObject({
  action: adminActionSchema,
  result: z.record(z.string(), z.unknown()),
  proposal: adminProposalSchema.optional(),
});
export type AdminOutcome = z.infer<typeof adminOutcomeSchema>;

/** The quorum in force and the proposals waiting, oldest first. */
export const adminProposalListSchema = z.strictObject({
  quorum: z.union([z.literal(1), z.literal(2)]),
  proposals: z.array(adminProposalSchema).max(1000),
});
export type AdminProposalList = z.infer<typeof adminProposalListSchema>;

/** Where a proposal stands: waiting for a second admin, performed on their confirmation, or rejected by them. */
export const adminProposalStateSchema = z.enum(['pending', 'executed', 'rejected']);
export type AdminProposalState = z.infer<typeof adminProposalStateSchema>;

/** What the second admin does with a proposal: confirm (it is performed) or reject (it is not). */
export const adminConfirmationVerdictSchema = z.enum(['confirm', 'reject']);
export type AdminConfirmationVerdict = z.infer<typeof adminConfirmationVerdictSchema>;

/** The second admin's ceremony: options for a tap over exactly this proposal and verdict. */
export const adminConfirmationCeremonySchema = z.strictObject({
  options: authenticationOptionsSchema,
  proposal: adminProposalSchema,
  verdict: adminConfirmationVerdictSchema,
});
export type AdminConfirmationCeremony = z.infer<typeof adminConfirmationCeremonySchema>;

export const adminConfirmationOutcomeSchema = z.strictObject({
  proposalId: text(64).min(1),
  verdict: adminConfirmationVerdictSchema,
  action: adminActionSchema,
  result: z.record(z.string(), z.unknown()),
});
export type AdminConfirmationOutcome = z.infer<typeof adminConfirmationOutcomeSchema>;

export const approverKeySchema = z.strictObject({
  credentialId: text(1400).min(1),
  aaguid,
  attestationFmt: text(64),
  transports: z.array(text(32)).max(16),
  status: z.enum(['active', 'suspect', 'removed']),
  createdAt: z.int().min(0),
  lastUsedAt: z.int().min(0).optional(),
});
export type ApproverKey = z.infer<typeof approverKeySchema>;

export const approverDetailSchema = z.strictObject({
  id: text(128).min(1),
  displayName: text(200),
  groups: z.array(text(128)).max(64),
  aliases: z.array(text(128)).max(256),
  virtual: z.boolean(),
  status: z.enum(['active', 'disabled']),
  keys: z.array(approverKeySchema).max(256),
});
export type ApproverDetail = z.infer<typeof approverDetailSchema>;
export const approverDirectorySchema = z.strictObject({ approvers: z.array(approverDetailSchema).max(10_000) });
