/**
 * @krkn/doctor — the checks behind `krkns doctor` and `krknc doctor`: each names the cause of a
 * silent failure from the Krkn guide (a login nobody saw, an auth key ignored, a node the policy
 * hides) with a one-line fix.
 */
export { doctorInputFrom, runChecks, suppressionCauses } from './checks.js';
export type { CheckResult, CheckStatus, Counterpart, DoctorInput } from './checks.js';
export { formatReport, reportExitCode } from './report.js';
