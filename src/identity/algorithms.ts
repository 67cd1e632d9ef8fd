/**
 * The JWS algorithms pgward accepts on identity tokens: asymmetric only, so a key published in a
 * JWKS can never double as an HMAC secret (the "HS256 signed with the public key" attack), and
 * `none` is never in the list. The only place algorithms are enumerated.
 */
export const ASYMMETRIC_ALGORITHMS = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
] as const;

export type AsymmetricAlgorithm = (typeof ASYMMETRIC_ALGORITHMS)[number];
