import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { nodeDefaults } from '../src/redis/cluster-defaults.js';

// node-redis connects to the cluster nodes it discovers with `defaults` alone.

test('the user, password and TLS of the root URL reach every node', () => {
  const defaults = nodeDefaults({
    rootNodes: [{ url: 'rediss://locks:p%40ss@10.0.0.1:6380' }],
    defaults: { socket: { connectTimeout: 100 } },
  });
  assert.equal(defaults, {
    username: 'locks',
    password: 'p@ss',
    socket: { connectTimeout: 100, tls: true },
  });
});

test('what defaults says wins over the root URL', () => {
  const defaults = nodeDefaults({
    rootNodes: [{ url: 'rediss://locks:secret@10.0.0.1:6380' }],
    defaults: { password: 'own', socket: { tls: false } },
  });
  assert.equal(defaults, { password: 'own', socket: { tls: false } });
});

test('root nodes without a URL, or a plain one without credentials, add nothing', () => {
  assert.equal(nodeDefaults({ rootNodes: [{ socket: { host: 'h', port: 1 } }] }), {});
  assert.equal(nodeDefaults({ rootNodes: [{ url: 'redis://h:1' }] }), {});
});

test.run();
