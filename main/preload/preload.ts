/**
 * The preload: implements CountersignBridge over IPC and exposes exactly the bridge's functions
 * (status, decisions, agents, approvers, pending approvals and the WebAuthn ceremonies) to the
 * page as `window.countersign`. ipcRenderer itself is never exposed. Answers are
 * validated against the shared schemas before they reach the page. It runs sandboxed, so it is
 * bundled (with zod and shared/) to one CommonJS file; see docs/desktop.md.
 */
import { contextBridge, ipcRenderer } from 'electron';
import type { z } from 'zod';
import {
  BRIDGE_CHANNELS, agentListSchema, approvalCeremonySchema, approvalOutcomeSchema, approverListSchema, bridgeErrorMessage, bridgeStatusSchema,
  clampDecisionLimit, decisionListSchema, pendingApprovalListSchema, registeredKeySchema, registrationOptionsSchema, toBridgeError,
  unwrapBridgeAnswer, type BridgeChannel, type CountersignBridge,
} from '../../shared/bridge.js';
import { CountersignError } from '../../shared/errors.js';

async function invoke<S extends z.ZodType>(channel: BridgeChannel, schema: S, ...args: unknown[]): Promise<z.infer<S>> {
  let raw: unknown;
  try {
    raw = await ipcRenderer.invoke(channel, ...args);
  } catch (cause) {
    throw new Error(bridgeErrorMessage(toBridgeError(new CountersignError('connection_closed', 'the Countersign main process did not answer', { cause }))));
  }
  try {
    return unwrapBridgeAnswer(schema, raw);
  } catch (error) {
    // Only the message survives the context bridge: carry the code in it.
    throw new Error(bridgeErrorMessage(toBridgeError(error)));
  }
}

const bridge: CountersignBridge = {
  getStatus: () => invoke(BRIDGE_CHANNELS.getStatus, bridgeStatusSchema),
  listRecentDecisions: (limit: number) => invoke(BRIDGE_CHANNELS.listRecentDecisions, decisionListSchema, clampDecisionLimit(limit)),
  listAgents: () => invoke(BRIDGE_CHANNELS.listAgents, agentListSchema),
  listApprovers: () => invoke(BRIDGE_CHANNELS.listApprovers, approverListSchema),
  listPendingApprovals: () => invoke(BRIDGE_CHANNELS.listPendingApprovals, pendingApprovalListSchema),
  beginApproverRegistration: (approverId, registrationCode) =>
    invoke(BRIDGE_CHANNELS.beginApproverRegistration, registrationOptionsSchema, approverId, registrationCode),
  finishApproverRegistration: (approverId, response) => invoke(BRIDGE_CHANNELS.finishApproverRegistration, registeredKeySchema, approverId, response),
  startApprovalCeremony: (requestId, approverId, verdict) => invoke(BRIDGE_CHANNELS.startApprovalCeremony, approvalCeremonySchema, requestId, approverId, verdict),
  submitApprovalCeremony: (requestId, approverId, response, reason) =>
    invoke(BRIDGE_CHANNELS.submitApprovalCeremony, approvalOutcomeSchema, requestId, approverId, response, reason),
};

contextBridge.exposeInMainWorld('countersign', Object.freeze({ ...bridge }));
