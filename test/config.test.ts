import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { parseClaimPath, readClaim } from '../src/config/claim_path.js';
import { loadConfig } from '../src/config/load.js';
import { redactConfig } from '../src/config/redact.js';
import { PgwardError } from '../src/errors.js';
import { runCli } from './support/cli.js';
import { tempDir } from './support/temp_dir.js';

/** Loads with only `env` (never the developer's real environment) and returns the error message. */
function failure(env: Record<string, string>, file?: string): string {
  try {
    loadConfig({ env, file });
  } catch (err) {
    assert.ok(err instanceof PgwardError);
    assert.equal(err.code, 'CONFIG_INVALID');
    return err.message;
  }
  assert.fail('expected the configuration to be refused');
}

describe('configuration defaults', () => {
  it('needs nothing to start with dev-friendly defaults', () => {
    const config = loadConfig({ env: {} });
    assert.equal(config.dataDir, '.pgward');
    assert.equal(config.http.port, 8080);
    assert.equal(config.pg.port, 55432);
    assert.equal(config.pg.maxMessageBytes, 64 * 1024 ** 2);
    assert.equal(config.pg.allowLoopbackPlaintext, false);
    assert.deepEqual(config.providers, []);
  });

  it('layers file < environment < flags', () => {
    const dir = tempDir('config');
    const file = path.join(dir, 'pgward.yaml');
    writeFileSync(file, 'http:\n  port: 9000\npg:\n  port: 6000\nlog:\n  level: debug\n');
    const config = loadConfig({ file, env: { PGWARD_PG_PORT: '6001' }, flags: { 'log.level': 'warn' } });
    assert.equal(config.http.port, 9000);
    assert.equal(config.pg.port, 6001);
    assert.equal(config.log.level, 'warn');
  });
});

describe('each wrong setting gives its own message', () => {
  const cases: [string, Record<string, string>, RegExp][] = [
    [
      'port not a number',
      { PGWARD_HTTP_PORT: 'eighty' },
      /http\.port \(from PGWARD_HTTP_PORT\): expected a port/,
    ],
    [
      'port out of range',
      { PGWARD_PG_PORT: '70000' },
      /pg\.port \(from PGWARD_PG_PORT\): expected a port from 0 to 65535/,
    ],
    [
      'bad store URL',
      { PGWARD_DATABASE_URL: 'mysql://x' },
      /databaseUrl \(from PGWARD_DATABASE_URL\): expected a postgres/,
    ],
    [
      'short secret key',
      { PGWARD_SECRET_KEY: 'abc' },
      /secretKey \(from PGWARD_SECRET_KEY\): expected 32 random bytes/,
    ],
    ['bad log level', { PGWARD_LOG_LEVEL: 'loud' }, /log\.level \(from PGWARD_LOG_LEVEL\)/],
    ['message cap too small', { PGWARD_PG_MAX_MESSAGE_BYTES: '10' }, /pg\.maxMessageBytes.*at least 8192/],
    ['TLS cert without key', { PGWARD_TLS_CERT: '/x.pem' }, /tls.*certFile and keyFile go together/],
    ['API_URL not a URL', { API_URL: 'not a url' }, /publicUrl \(from API_URL\): expected an http\(s\) URL/],
    [
      'IdP client id missing',
      { IDP_ISSUER: 'https://idp.example.com' },
      /IDP_CLIENT_ID: is required when IDP_ISSUER is set/,
    ],
    ['IdP issuer missing', { IDP_CLIENT_ID: 'abc' }, /IDP_CLIENT_ID: is set but IDP_ISSUER is not/],
    ['IdP issuer not a URL', { IDP_ISSUER: 'idp', IDP_CLIENT_ID: 'a' }, /IDP_ISSUER: "idp" is not a URL/],
    [
      'unknown issuer query',
      { IDP_ISSUER: 'https://i.example.com?x=1', IDP_CLIENT_ID: 'a' },
      /IDP_ISSUER: the only query/,
    ],
    [
      'bad groups claim path',
      { IDP_ISSUER: 'https://i', IDP_CLIENT_ID: 'a', IDP_GROUPS_CLAIM: '$.a..b' },
      /claims\.groups.*expected a name/,
    ],
    ['Hasura list not JSON', { PGWARD_SSO_PROVIDERS: '[{' }, /PGWARD_SSO_PROVIDERS: is not valid JSON/],
    ['Hasura list not a list', { PGWARD_SSO_PROVIDERS: '{}' }, /PGWARD_SSO_PROVIDERS: expected a JSON array/],
    [
      'Hasura issuer missing',
      { PGWARD_SSO_PROVIDERS: '[{"client_id":"a","name":"X","jwt_secret":{"type":"RS256"}}]' },
      /PGWARD_SSO_PROVIDERS\[0\]\.jwt_secret\.issuer: is required/,
    ],
    [
      'Hasura symmetric key',
      {
        PGWARD_SSO_PROVIDERS:
          '[{"client_id":"a","name":"X","jwt_secret":{"type":"HS256","key":"s","issuer":"https://i"}}]',
      },
      /PGWARD_SSO_PROVIDERS\[0\]\.jwt_secret\.key: symmetric keys are refused/,
    ],
    [
      'Hasura HS256 algorithm',
      {
        PGWARD_SSO_PROVIDERS:
          '[{"client_id":"a","name":"X","jwt_secret":{"type":"HS256","issuer":"https://i"}}]',
      },
      /providers\.0\.algorithms\.0 \(from PGWARD_SSO_PROVIDERS\[0\]\): expected one of RS256/,
    ],
    [
      'Hasura unknown claim',
      {
        PGWARD_SSO_PROVIDERS:
          '[{"client_id":"a","name":"X","jwt_secret":{"type":"RS256","issuer":"https://i","claims_map":{"x-foo":"$.a"}}}]',
      },
      /claims_map\.x-foo: unknown claim/,
    ],
    [
      'duplicate provider names',
      {
        IDP_ISSUER: 'https://a.example.com',
        IDP_CLIENT_ID: 'a',
        PGWARD_SSO_PROVIDERS:
          '[{"client_id":"b","name":"Default","jwt_secret":{"type":"RS256","issuer":"https://b"}}]',
      },
      /providers\.1\.name.*"default" is used twice/,
    ],
  ];
  for (const [name, env, expected] of cases) {
    it(name, () => assert.match(failure(env), expected));
  }

  it('names every problem at once', () => {
    const message = failure({ PGWARD_HTTP_PORT: 'x', PGWARD_PG_PORT: '-1' });
    assert.match(message, /http\.port/);
    assert.match(message, /pg\.port/);
  });

  it('names unknown keys and the file they came from', () => {
    const file = path.join(tempDir('config'), 'bad.json');
    writeFileSync(file, JSON.stringify({ http: { prot: 1 } }));
    assert.match(failure({}, file), /http \(from .*bad\.json: http\): unknown setting\(s\): prot/);
  });

  it('names a config file that cannot be parsed', () => {
    const file = path.join(tempDir('config'), 'broken.yaml');
    writeFileSync(file, 'http: [1, 2\n');
    assert.match(failure({}, file), /broken\.yaml: cannot be parsed/);
  });

  it('exits non-zero from the command line, naming the setting', async () => {
    const result = await runCli(['config', 'print'], { env: { PGWARD_HTTP_PORT: 'eighty' } });
    assert.equal(result.code, 78);
    assert.match(result.stderr, /http\.port \(from PGWARD_HTTP_PORT\)/);
  });
});

describe('provider formats', () => {
  const hoopEnv = {
    IDP_ISSUER: 'https://idp.example.com/realms/acme',
    IDP_CLIENT_ID: 'pgward',
    IDP_CLIENT_SECRET: 's3cret-value',
    IDP_AUDIENCE: 'pgward-api',
    IDP_CUSTOM_SCOPES: 'groups, offline_access',
    IDP_GROUPS_CLAIM: 'https://app.hoop.dev/groups',
  };
  const hasura = [
    {
      client_id: 'pgward',
      client_secret: 's3cret-value',
      name: 'default',
      scope: 'openid profile email groups offline_access',
      admin_roles: ['admin'],
      jwt_secret: {
        type: 'RS256',
        issuer: 'https://idp.example.com/realms/acme',
        audience: 'pgward-api',
        claims_map: { 'x-hasura-allowed-roles': { path: "$['https://app.hoop.dev/groups']" } },
      },
    },
  ];

  it('Hoop IDP_* variables and Hasura JSON normalise to the same provider list', () => {
    const fromHoop = loadConfig({ env: hoopEnv }).providers;
    const fromHasura = loadConfig({ env: { PGWARD_SSO_PROVIDERS: JSON.stringify(hasura) } }).providers;
    assert.equal(fromHoop.length, 1);
    // The Hasura entry names its algorithm and display name; everything else must match exactly.
    const { algorithms: _a, displayName: _d, ...hasuraRest } = fromHasura[0]!;
    const { algorithms: _b, ...hoopRest } = fromHoop[0]!;
    assert.deepEqual(hasuraRest, hoopRest);
    assert.deepEqual(fromHoop[0]!.claims.groups, ['https://app.hoop.dev/groups']);
    assert.deepEqual(fromHasura[0]!.algorithms, ['RS256']);
  });

  it('IDP_ISSUER with ?_userinfo=1 validates through the userinfo endpoint', () => {
    const [provider] = loadConfig({
      env: { ...hoopEnv, IDP_ISSUER: 'https://idp.example.com?_userinfo=1' },
    }).providers;
    assert.equal(provider!.validation, 'userinfo');
    assert.equal(provider!.issuer, 'https://idp.example.com');
  });

  it('reads the Dex example of the Hasura guide as it is', () => {
    const dex = [
      {
        client_id: 'hasura-app',
        name: 'SAML Login',
        scope: 'openid offline_access groups',
        authorization_url: 'https://dex.example.com/auth',
        request_token_url: 'https://dex.example.com/token',
        admin_roles: ['admin'],
        jwt_secret: {
          type: 'RS256',
          jwk_url: 'https://dex.example.com/keys',
          issuer: 'https://dex.example.com',
          claims_map: {
            'x-hasura-allowed-roles': { path: '$.groups' },
            'x-hasura-default-role': { path: '$.groups[0]' },
          },
        },
      },
    ];
    const [provider] = loadConfig({ env: { PGWARD_SSO_PROVIDERS: JSON.stringify(dex) } }).providers;
    assert.equal(provider!.name, 'saml-login');
    assert.equal(provider!.displayName, 'SAML Login');
    assert.equal(provider!.jwksUri, 'https://dex.example.com/keys');
    assert.equal(provider!.tokenUrl, 'https://dex.example.com/token');
    assert.deepEqual(provider!.scopes, ['openid', 'offline_access', 'groups']);
    assert.deepEqual(provider!.claims.groups, ['groups']);
    assert.deepEqual(provider!.adminGroups, ['admin']);
  });

  it('takes providers from the config file and the environment together', () => {
    const file = path.join(tempDir('config'), 'p.yaml');
    writeFileSync(file, 'providers:\n  - name: okta\n    issuer: https://acme.okta.com\n    clientId: abc\n');
    const names = loadConfig({ file, env: hoopEnv }).providers.map((p) => p.name);
    assert.deepEqual(names, ['okta', 'default']);
  });
});

describe('claim paths', () => {
  it('parses names and the JSONPath subset', () => {
    assert.deepEqual(parseClaimPath('groups'), ['groups']);
    assert.deepEqual(parseClaimPath('https://app.hoop.dev/groups'), ['https://app.hoop.dev/groups']);
    assert.deepEqual(parseClaimPath('$.realm_access.roles'), ['realm_access', 'roles']);
    assert.deepEqual(parseClaimPath("$['https://x/groups'][0]"), ['https://x/groups', 0]);
    assert.deepEqual(parseClaimPath('$["a\\"b"]'), ['a"b']);
    for (const bad of ['', '$', '$.', '$[x]', '$.a b', `$${'.a'.repeat(300)}`]) {
      assert.throws(() => parseClaimPath(bad), Error, bad);
    }
  });

  it('reads values without walking into prototypes', () => {
    const claims = { realm_access: { roles: ['a', 'b'] }, groups: ['x'] };
    assert.deepEqual(readClaim(claims, ['realm_access', 'roles']), ['a', 'b']);
    assert.equal(readClaim(claims, ['groups', 0]), 'x');
    assert.equal(readClaim(claims, ['groups', 'length']), undefined);
    assert.equal(readClaim(claims, ['__proto__']), undefined);
    assert.equal(readClaim(claims, ['missing', 'deeper']), undefined);
  });
});

describe('config print', () => {
  it('redacts every secret', async () => {
    const env = {
      PGWARD_DATABASE_URL: 'postgres://pgward:hunter2@db.example.com/pgward',
      PGWARD_SECRET_KEY: Buffer.alloc(32, 7).toString('base64'),
      IDP_ISSUER: 'https://idp.example.com',
      IDP_CLIENT_ID: 'pgward',
      IDP_CLIENT_SECRET: 'topsecret-client',
    };
    const printed = JSON.stringify(redactConfig(loadConfig({ env })));
    for (const secret of ['hunter2', env.PGWARD_SECRET_KEY, 'topsecret-client'])
      assert.ok(!printed.includes(secret));
    assert.match(printed, /db\.example\.com/);
    const result = await runCli(['config', 'print'], { env });
    assert.equal(result.code, 0, result.stderr);
    for (const secret of ['hunter2', env.PGWARD_SECRET_KEY, 'topsecret-client'])
      assert.ok(!result.stdout.includes(secret));
    assert.equal(JSON.parse(result.stdout).providers[0].clientSecret, '[redacted]');
  });
});
