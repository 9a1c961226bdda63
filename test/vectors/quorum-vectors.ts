/**
 * The shape of test/vectors/quorum.json (the one quorum rule's vectors), for the three tests
 * that run it: core, the tool-side verifier and the renderer. Types only, so the renderer's
 * tsconfig (no Node) can import it too.
 */
export interface QuorumVectorApproval {
  approverId: string;
  credentialId: string;
  groups: string[];
}

export interface QuorumVectorStatus {
  required: number;
  satisfied: boolean;
  counted: string[];
  stillNeeded: number;
  openGroups: string[][];
}

export interface QuorumVector {
  name: string;
  requirement: { approvals: number; groups: string[][] };
  approvals: QuorumVectorApproval[];
  expect: QuorumVectorStatus;
  /** Whether one more person approving would move the request towards its quorum. */
  candidates?: Array<{ approverId: string; groups: string[]; stillNeeded: boolean }>;
  /** Where the verifier refuses a requirement it cannot read (the error code), and why. */
  verifier?: { error: string; why: string };
}

export interface StricterVectorRequirement {
  approvals: number;
  groups: string[][];
  ttlSeconds: number;
  userVerification: 'required' | 'preferred';
}

export interface StricterVector {
  name: string;
  a: StricterVectorRequirement;
  b: StricterVectorRequirement;
  expect: StricterVectorRequirement;
  approvals?: QuorumVectorApproval[];
  quorumBefore?: { satisfied: boolean };
  quorumAfter?: QuorumVectorStatus;
}

export interface QuorumVectorFile {
  description: string;
  quorum: QuorumVector[];
  stricter: StricterVector[];
}
