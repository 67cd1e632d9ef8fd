/**
 * PostgreSQL frontend/backend protocol constants (PostgreSQL docs, chapter "Frontend/Backend
 * Protocol", section "Message Formats"). Every regular message is: 1 type byte, a 4-byte
 * big-endian length that counts itself but not the type byte, then the body.
 */

/** Special startup codes: a length, then one of these instead of a protocol version. */
export const REQUEST_CODE = {
  CANCEL: 80877102,
  SSL: 80877103,
  GSSENC: 80877104,
} as const;

/** Protocol versions as sent in StartupMessage: major << 16 | minor. */
export const PROTOCOL = {
  V3_0: 0x00030000,
  V3_2: 0x00030002,
} as const;

/** The highest protocol minor version pgward speaks to clients. */
export const HIGHEST_MINOR = 2;

/** Size caps: PostgreSQL's own startup cap, and the password cap of the issue (tokens are long). */
export const LIMITS = {
  STARTUP_BYTES: 10_000,
  PASSWORD_BYTES: 65_535,
  /** Cancel keys of protocol 3.2 are at most 256 bytes. */
  CANCEL_KEY_BYTES: 256,
} as const;

/** Frontend (client → server) message types. */
export const FE = {
  BIND: 0x42, // B
  CLOSE: 0x43, // C
  COPY_DATA: 0x64, // d
  COPY_DONE: 0x63, // c
  COPY_FAIL: 0x66, // f
  DESCRIBE: 0x44, // D
  EXECUTE: 0x45, // E
  FLUSH: 0x48, // H
  FUNCTION_CALL: 0x46, // F
  PARSE: 0x50, // P
  PASSWORD: 0x70, // p (also SASLInitialResponse, SASLResponse, GSSResponse)
  QUERY: 0x51, // Q
  SYNC: 0x53, // S
  TERMINATE: 0x58, // X
} as const;

/** Backend (server → client) message types. */
export const BE = {
  AUTHENTICATION: 0x52, // R
  BACKEND_KEY_DATA: 0x4b, // K
  BIND_COMPLETE: 0x32, // 2
  CLOSE_COMPLETE: 0x33, // 3
  COMMAND_COMPLETE: 0x43, // C
  COPY_DATA: 0x64, // d
  COPY_DONE: 0x63, // c
  COPY_IN_RESPONSE: 0x47, // G
  COPY_OUT_RESPONSE: 0x48, // H
  DATA_ROW: 0x44, // D
  EMPTY_QUERY: 0x49, // I
  ERROR: 0x45, // E
  NEGOTIATE_PROTOCOL_VERSION: 0x76, // v
  NOTICE: 0x4e, // N
  NOTIFICATION: 0x41, // A
  PARAMETER_STATUS: 0x53, // S
  PARSE_COMPLETE: 0x31, // 1
  PORTAL_SUSPENDED: 0x73, // s
  READY_FOR_QUERY: 0x5a, // Z
  ROW_DESCRIPTION: 0x54, // T
} as const;

/** Authentication request codes carried in an 'R' message. */
export const AUTH = {
  OK: 0,
  CLEARTEXT: 3,
  MD5: 5,
  SASL: 10,
  SASL_CONTINUE: 11,
  SASL_FINAL: 12,
} as const;

/** The TLS record type that starts a direct TLS connection (PostgreSQL 17 `sslnegotiation=direct`). */
export const TLS_HANDSHAKE_BYTE = 0x16;
