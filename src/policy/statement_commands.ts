/**
 * Command names as PostgreSQL's command tags spell them (CreateCommandName in utility.c),
 * from a parse tree node. Types not listed get their node name in words (CreateExtensionStmt:
 * CREATE EXTENSION).
 */
import type { PgNode } from './sql_parser.js';

const FIXED: Record<string, string> = {
  SelectStmt: 'SELECT',
  InsertStmt: 'INSERT',
  UpdateStmt: 'UPDATE',
  DeleteStmt: 'DELETE',
  MergeStmt: 'MERGE',
  CopyStmt: 'COPY',
  ExplainStmt: 'EXPLAIN',
  PrepareStmt: 'PREPARE',
  ExecuteStmt: 'EXECUTE',
  DeclareCursorStmt: 'DECLARE CURSOR',
  DoStmt: 'DO',
  CallStmt: 'CALL',
  VariableShowStmt: 'SHOW',
  LockStmt: 'LOCK TABLE',
  TruncateStmt: 'TRUNCATE TABLE',
  RefreshMatViewStmt: 'REFRESH MATERIALIZED VIEW',
  CreateStmt: 'CREATE TABLE',
  CreateForeignTableStmt: 'CREATE FOREIGN TABLE',
  IndexStmt: 'CREATE INDEX',
  ViewStmt: 'CREATE VIEW',
  RuleStmt: 'CREATE RULE',
  CreateTrigStmt: 'CREATE TRIGGER',
  CreateEventTrigStmt: 'CREATE EVENT TRIGGER',
  CreateSeqStmt: 'CREATE SEQUENCE',
  AlterSeqStmt: 'ALTER SEQUENCE',
  CreateSchemaStmt: 'CREATE SCHEMA',
  CompositeTypeStmt: 'CREATE TYPE',
  CreateEnumStmt: 'CREATE TYPE',
  CreateRangeStmt: 'CREATE TYPE',
  AlterEnumStmt: 'ALTER TYPE',
  CreateDomainStmt: 'CREATE DOMAIN',
  AlterDomainStmt: 'ALTER DOMAIN',
  CreatedbStmt: 'CREATE DATABASE',
  DropdbStmt: 'DROP DATABASE',
  AlterDatabaseStmt: 'ALTER DATABASE',
  AlterDatabaseSetStmt: 'ALTER DATABASE',
  AlterDatabaseRefreshCollStmt: 'ALTER DATABASE',
  CreateRoleStmt: 'CREATE ROLE',
  AlterRoleStmt: 'ALTER ROLE',
  AlterRoleSetStmt: 'ALTER ROLE',
  DropRoleStmt: 'DROP ROLE',
  ReassignOwnedStmt: 'REASSIGN OWNED',
  DropOwnedStmt: 'DROP OWNED',
  CommentStmt: 'COMMENT',
  SecLabelStmt: 'SECURITY LABEL',
  AlterSystemStmt: 'ALTER SYSTEM',
  AlterDefaultPrivilegesStmt: 'ALTER DEFAULT PRIVILEGES',
  CreatePolicyStmt: 'CREATE POLICY',
  AlterPolicyStmt: 'ALTER POLICY',
  CreateFdwStmt: 'CREATE FOREIGN DATA WRAPPER',
  AlterFdwStmt: 'ALTER FOREIGN DATA WRAPPER',
  CreateForeignServerStmt: 'CREATE SERVER',
  AlterForeignServerStmt: 'ALTER SERVER',
  CreateUserMappingStmt: 'CREATE USER MAPPING',
  AlterUserMappingStmt: 'ALTER USER MAPPING',
  DropUserMappingStmt: 'DROP USER MAPPING',
  CreatePLangStmt: 'CREATE LANGUAGE',
  CreateStatsStmt: 'CREATE STATISTICS',
  AlterStatsStmt: 'ALTER STATISTICS',
  ListenStmt: 'LISTEN',
  NotifyStmt: 'NOTIFY',
  UnlistenStmt: 'UNLISTEN',
  LoadStmt: 'LOAD',
  ClusterStmt: 'CLUSTER',
  ReindexStmt: 'REINDEX',
  CheckPointStmt: 'CHECKPOINT',
  ConstraintsSetStmt: 'SET CONSTRAINTS',
  AlterObjectSchemaStmt: 'ALTER',
  AlterOwnerStmt: 'ALTER',
  RenameStmt: 'ALTER',
};

const TRANSACTION: Record<string, string> = {
  TRANS_STMT_BEGIN: 'BEGIN',
  TRANS_STMT_START: 'START TRANSACTION',
  TRANS_STMT_COMMIT: 'COMMIT',
  TRANS_STMT_ROLLBACK: 'ROLLBACK',
  TRANS_STMT_SAVEPOINT: 'SAVEPOINT',
  TRANS_STMT_RELEASE: 'RELEASE',
  TRANS_STMT_ROLLBACK_TO: 'ROLLBACK',
  TRANS_STMT_PREPARE: 'PREPARE TRANSACTION',
  TRANS_STMT_COMMIT_PREPARED: 'COMMIT PREPARED',
  TRANS_STMT_ROLLBACK_PREPARED: 'ROLLBACK PREPARED',
};

/** Object types as words: OBJECT_MATVIEW is MATERIALIZED VIEW. */
const OBJECT_WORDS: Record<string, string> = {
  MATVIEW: 'MATERIALIZED VIEW',
  FOREIGN_TABLE: 'FOREIGN TABLE',
  FDW: 'FOREIGN DATA WRAPPER',
  FOREIGN_SERVER: 'SERVER',
  TSCONFIGURATION: 'TEXT SEARCH CONFIGURATION',
  TSDICTIONARY: 'TEXT SEARCH DICTIONARY',
  TSPARSER: 'TEXT SEARCH PARSER',
  TSTEMPLATE: 'TEXT SEARCH TEMPLATE',
  OPCLASS: 'OPERATOR CLASS',
  OPFAMILY: 'OPERATOR FAMILY',
  EVENT_TRIGGER: 'EVENT TRIGGER',
  ACCESS_METHOD: 'ACCESS METHOD',
  STATISTIC_EXT: 'STATISTICS',
  LARGEOBJECT: 'LARGE OBJECT',
  TABCONSTRAINT: 'TABLE',
  COLUMN: 'TABLE',
  ATTRIBUTE: 'TYPE',
};

function objectWords(objtype: unknown): string {
  const raw = String(objtype ?? '').replace(/^OBJECT_/, '');
  return OBJECT_WORDS[raw] ?? raw.replace(/_/g, ' ');
}

/** PostgreSQL's command tag for a statement node of the given type. */
export function commandTag(type: string, node: PgNode): string {
  switch (type) {
    case 'TransactionStmt':
      return TRANSACTION[String(node['kind'])] ?? 'BEGIN';
    case 'VariableSetStmt':
      return String(node['kind']).startsWith('VAR_RESET') ? 'RESET' : 'SET';
    case 'SelectStmt':
      return node['intoClause'] !== undefined ? 'SELECT INTO' : 'SELECT';
    case 'CreateTableAsStmt':
      if (node['objtype'] === 'OBJECT_MATVIEW') return 'CREATE MATERIALIZED VIEW';
      return node['is_select_into'] === true ? 'SELECT INTO' : 'CREATE TABLE AS';
    case 'FetchStmt':
      return node['ismove'] === true ? 'MOVE' : 'FETCH';
    case 'ClosePortalStmt':
      return node['portalname'] === undefined ? 'CLOSE CURSOR ALL' : 'CLOSE CURSOR';
    case 'DeallocateStmt':
      return node['isall'] === true ? 'DEALLOCATE ALL' : 'DEALLOCATE';
    case 'DiscardStmt':
      return `DISCARD ${String(node['target'] ?? 'DISCARD_ALL').replace(/^DISCARD_/, '')}`;
    case 'VacuumStmt':
      return node['is_vacuumcmd'] === true ? 'VACUUM' : 'ANALYZE';
    case 'GrantStmt':
      return node['is_grant'] === true ? 'GRANT' : 'REVOKE';
    case 'GrantRoleStmt':
      return node['is_grant'] === true ? 'GRANT ROLE' : 'REVOKE ROLE';
    case 'CreateFunctionStmt':
      return node['is_procedure'] === true ? 'CREATE PROCEDURE' : 'CREATE FUNCTION';
    case 'DropStmt':
      return `DROP ${objectWords(node['removeType'])}`;
    case 'AlterTableStmt':
      return `ALTER ${objectWords(node['objtype'])}`;
    case 'RenameStmt':
      return `ALTER ${objectWords(node['renameType'])}`;
    case 'AlterObjectSchemaStmt':
    case 'AlterOwnerStmt':
      return `ALTER ${objectWords(node['objectType'])}`;
    case 'DefineStmt':
      return `CREATE ${objectWords(node['kind'])}`;
    case 'AlterFunctionStmt':
      return `ALTER ${objectWords(node['objtype'])}`;
  }
  const fixed = FIXED[type];
  if (fixed !== undefined) return fixed;
  // CreateExtensionStmt -> CREATE EXTENSION
  return type
    .replace(/Stmt$/, '')
    .replace(/([a-z])([A-Z])/g, '$1 $2')
    .toUpperCase();
}
