/**
 * An agent's enrollment request file, dropped onto the desk or chosen with a file picker: read
 * as text, parsed as strict JSON and checked against the shared schema, so a wrong file is named
 * at once (the server verifies the proof of possession again before anything is enrolled).
 */
import { useId, useState } from 'react';
import { enrollmentRequestSchema, type EnrollmentRequest } from '../../../shared/enrollment.js';
import { parseStrictJson } from '../../../shared/canonical-json.js';

/** Enrollment request files are small (a public key and a signature): refuse anything big. */
const MAX_FILE_BYTES = 64 * 1024;

export async function readEnrollmentFile(file: File): Promise<EnrollmentRequest> {
  if (file.size > MAX_FILE_BYTES) throw new Error(`"${file.name}" is too large to be an enrollment request`);
  let parsed: unknown;
  try {
    parsed = parseStrictJson(await file.text());
  } catch {
    throw new Error(`"${file.name}" is not JSON`);
  }
  const checked = enrollmentRequestSchema.safeParse(parsed);
  if (!checked.success) throw new Error(`"${file.name}" is not an enrollment request (made by countersign keygen or the agent SDK)`);
  return checked.data;
}

export function EnrollmentDrop({
  label,
  testId,
  onRequest,
}: {
  label: string;
  testId: string;
  onRequest: (request: EnrollmentRequest, fileName: string) => void;
}) {
  const inputId = useId();
  const [over, setOver] = useState(false);
  const [problem, setProblem] = useState<string | undefined>();
  const take = async (file: File | undefined) => {
    if (file === undefined) return;
    setProblem(undefined);
    try {
      onRequest(await readEnrollmentFile(file), file.name);
    } catch (caught) {
      setProblem(caught instanceof Error ? caught.message : String(caught));
    }
  };
  return (
    <div
      className={over ? 'drop-zone drop-zone-over' : 'drop-zone'}
      data-testid={testId}
      onDragOver={(e) => {
        e.preventDefault();
        setOver(true);
      }}
      onDragLeave={() => setOver(false)}
      onDrop={(e) => {
        e.preventDefault();
        setOver(false);
        void take(e.dataTransfer.files[0]);
      }}
    >
      <p>
        Drop the agent&apos;s enrollment request file here (for example <code>agent.enrollment.json</code>), or
      </p>
      <label htmlFor={inputId} className="file-label">
        {label}
      </label>
      <input
        id={inputId}
        type="file"
        accept=".json,application/json"
        data-testid={`${testId}-input`}
        onChange={(e) => void take(e.target.files?.[0])}
      />
      {problem && (
        <p className="error" role="alert" data-testid={`${testId}-problem`}>
          {problem}
        </p>
      )}
    </div>
  );
}
