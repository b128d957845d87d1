// Processors written with Routr's own library (@routr/processor from npm), for
// tests/e2e/test_routr_processors.py. Prints "ready" once it listens.
//
//   node routr_processor.js BIND_ADDR echo        answers MESSAGE and OPTIONS with 200
//                                                 and X-Echo (Routr's echo example)
//   node routr_processor.js BIND_ADDR simpleauth  a middleware: 401 with a digest challenge
//                                                 unless the request answers it as "web"
//                                                 (Routr's simpleauth example), else on

'use strict';

const Processor = require('@routr/processor').default;
const { Auth } = require('@routr/common');

const [bindAddr, mode] = process.argv.slice(2);
const users = [{ username: 'web', secret: 'web-secret' }];

function echo(req, res) {
  const body = req.message.body || '';
  res.sendOk([
    { name: 'X-Echo', value: body.trim() || req.method },
    { name: 'X-Processor', value: 'routr-echo' },
  ]);
}

function simpleauth(req, res) {
  const auth = req.message.authorization;
  if (auth && auth.response) {
    const user = users.find((u) => u.username === auth.username);
    const expected = user && Auth.calculateAuthResponse({ ...auth, method: req.method }, user);
    if (expected === auth.response) {
      req.message.extensions.push({ name: 'X-Authenticated-By', value: 'simpleauth' });
      return res.send(req); // on to the next in the chain
    }
    return res.send({ message: { responseType: 'FORBIDDEN', reasonPhrase: 'Forbidden (simpleauth)' } });
  }
  res.send({
    message: {
      responseType: 'UNAUTHORIZED',
      reasonPhrase: 'Unauthorized',
      extensions: [{
        name: 'WWW-Authenticate',
        value: `Digest realm="sip.local", nonce="${Auth.generateNonce()}", qop="auth", algorithm=MD5`,
      }],
    },
  });
}

new Processor({ bindAddr, name: mode }).listen(mode === 'echo' ? echo : simpleauth);
setTimeout(() => console.log('ready'), 500);
