/**
 * The desk's first run: while no admin exists, whoever starts the app on this machine may create
 * the first admin and receive their registration code, so the whole setup happens in the desk
 * (the same root of trust as `countersign approvers add` on the machine: the local session). Once
 * any admin exists the door is shut for good (`first_run_closed`); later approvers and admins are
 * added by an admin's key-tapped action. The check and the insert are one IMMEDIATE transaction,
 * so two desks racing to create the first admin cannot both win. On a team hub the check and the
 * insert are one team directory write (approvals/team-approvers.ts: under the directory lock, "no
 * admin yet" read in PostgreSQL), so two desks on two hubs cannot both win either.
 */
import type { Db } from '../store/database.js';
import type { ApproverDirectory } from './approver-directory.js';
import { ADMIN_GROUP_NAME } from '../../../shared/bridge.js';
import { CountersignError } from '../../../shared/errors.js';
import type { TeamApprovers } from './team-approvers.js';

export interface FirstRunState {
  /** No admin exists yet: the first-run setup is offered. */
  readonly open: boolean;
  /** Approvers in the directory (any group). */
  readonly approvers: number;
}

export class FirstRun {
  constructor(
    private readonly db: Db,
    private readonly directory: Pick<ApproverDirectory, 'list' | 'addApprover' | 'issueRegistrationCode'>,
    private readonly team?: Pick<TeamApprovers, 'add'>,
  ) {}

  state(): FirstRunState {
    const approvers = this.directory.list();
    return { open: !approvers.some((a) => a.groups.includes(ADMIN_GROUP_NAME)), approvers: approvers.length };
  }

  /** Create the first admin and their single-use registration code (shown once, to this desk). */
  async createFirstAdmin(id: string, displayName: string): Promise<{ approverId: string; code: string; expiresAt: number }> {
    if (this.team !== undefined) {
      const { approver, registration } = await this.team.add(
        { id, displayName, groups: [ADMIN_GROUP_NAME] },
        { issuedBy: 'first-run', firstRun: true },
      );
      return { approverId: approver.id, code: registration!.code, expiresAt: registration!.expiresAt };
    }
    return this.db
      .transaction(() => {
        if (!this.state().open) throw new CountersignError('first_run_closed', 'an admin already exists; ask them for a registration code');
        const approver = this.directory.addApprover({ id, displayName, groups: [ADMIN_GROUP_NAME] });
        const { code, expiresAt } = this.directory.issueRegistrationCode(approver.id, 'first-run');
        return { approverId: approver.id, code, expiresAt };
      })
      .immediate();
  }
}
