/**
 * The bridge table's method names, without zod: the desk's first-paint bridge
 * (renderer/src/deferred-bridge.ts) offers every method before the table's schemas have loaded.
 * shared/bridge-table.ts holds this list equal to its rows at compile time (a row without its name
 * here, or a name without its row, fails the typecheck).
 */
export const BRIDGE_METHOD_NAME_LIST = [
  'getStatus',
  'listRecentDecisions',
  'listAgents',
  'listApprovers',
  'listPendingApprovals',
  'beginApproverRegistration',
  'finishApproverRegistration',
  'startApprovalCeremony',
  'submitApprovalCeremony',
  'searchHistory',
  'getHistoryEntry',
  'getPolicyOverview',
  'testPolicyCall',
  'getCustodyHealth',
  'verifyAuditNow',
  'getFirstRun',
  'createFirstAdmin',
  'startAdminAction',
  'submitAdminAction',
  'listPendingAdminActions',
  'startAdminConfirmation',
  'submitAdminConfirmation',
  'listApproverDirectory',
  'listWebhookDeadLetters',
  'retryWebhookDeadLetter',
  'getSession',
  'beginSignIn',
  'finishSignIn',
  'signOut',
  'listQueue',
  'getRequest',
] as const;
