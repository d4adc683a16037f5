/** What every subcommand writes to, so tests can run the CLI in-process and read its output. */
export interface CliContext {
  out: (line: string) => void;
  err: (line: string) => void;
  /** The exit code the subcommand chose; 0 unless it sets one. */
  exitCode: number;
}
