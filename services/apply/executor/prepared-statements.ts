/**
 * The one prepared-statement scheme of an apply connection: planners name statements through it
 * (`execute`, no I/O: once per owner — a table version, or a constant statement — and shape), and
 * the executor prepares the new ones (`prepareNew`) before the round trip that first executes
 * them. Prepared statements survive rollbacks, so each is prepared once per connection.
 */
import { executeSql, prepareSql, type Statement, type StatementNamer } from '../planner/script.ts';

export class PreparedStatements implements StatementNamer {
  private readonly names = new WeakMap<object, Map<string, string>>();
  private count = 0;
  private readonly toPrepare: string[] = [];

  constructor(private readonly db: { query: (sql: string) => Promise<unknown> }) {}

  /** `execute …(args)` of the statement `build` gives for this owner and shape (built once). */
  execute(owner: object, shape: string, build: () => Statement, args: string[]): string {
    let names = this.names.get(owner);
    if (names === undefined) {
      names = new Map();
      this.names.set(owner, names);
    }
    let name = names.get(shape);
    if (name === undefined) {
      name = `brabant_fast_${++this.count}`;
      names.set(shape, name);
      this.toPrepare.push(prepareSql(name, build()));
    }
    return executeSql(name, args);
  }

  /** Prepares the statements `execute` named since the last call (before the round trip using them). */
  async prepareNew(): Promise<void> {
    while (this.toPrepare.length > 0) {
      await this.db.query(this.toPrepare[0]!);
      this.toPrepare.shift();
    }
  }
}
