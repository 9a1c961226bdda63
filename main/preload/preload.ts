/**
 * The preload: implements CountersignBridge over IPC and exposes exactly those three functions
 * to the page as `window.countersign`. ipcRenderer itself is never exposed. Answers are
 * validated against the shared schemas before they reach the page. It runs sandboxed, so it is
 * bundled (with zod and shared/) to one CommonJS file; see docs/desktop.md.
 */
import { contextBridge, ipcRenderer } from 'electron';
import type { z } from 'zod';
import {
  BRIDGE_CHANNELS, agentListSchema, bridgeErrorMessage, bridgeStatusSchema, clampDecisionLimit, decisionListSchema, toBridgeError,
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
};

contextBridge.exposeInMainWorld('countersign', Object.freeze({ ...bridge }));
