// Runs a LoRaWAN codec file the way the network servers do, for tests/devices/test_firmware.py.
//
//   node run_codec.js <codec.js> <fPort> <hex payload> [<hex payload> ...]
//
// The codec's source is evaluated as a plain script in a fresh context with nothing but
// the ECMAScript built-ins (no require, no module, no console), then
// decodeUplink({bytes, fPort, recvTime, variables}) is called once per payload, as
// ChirpStack v4 does (it appends `decodeUplink(chirpstack_input)` to the source) and as
// The Things Stack does. A codec without decodeUplink is run the way The Things Stack
// runs a legacy (TTN v2) formatter, {data: Decoder(bytes, fPort)}, or failing that as a
// ChirpStack v3 codec, {data: Decode(fPort, bytes, variables)}. Prints a JSON array with
// one result object per payload. Run with TZ=UTC for codecs that format local times.
"use strict";
const fs = require("fs");
const vm = require("vm");

const [codecPath, fPortText, ...payloads] = process.argv.slice(2);
if (!codecPath || !fPortText || payloads.length === 0) {
  process.stderr.write("usage: node run_codec.js <codec.js> <fPort> <hex> [<hex> ...]\n");
  process.exit(2);
}
const source = fs.readFileSync(codecPath, "utf8");
const results = payloads.map((hex) => {
  if (!/^([0-9a-fA-F]{2})*$/.test(hex)) {
    throw new Error(`not a hex payload: ${hex}`);
  }
  const bytes = [];
  for (let i = 0; i < hex.length; i += 2) {
    bytes.push(parseInt(hex.slice(i, i + 2), 16));
  }
  const input = {
    bytes,
    fPort: Number(fPortText),
    recvTime: new Date("2024-05-10T03:15:00Z"),
    variables: {},
  };
  const context = vm.createContext({ codec_input: input });
  const call =
    "(typeof decodeUplink === 'function') ? decodeUplink(codec_input)" +
    " : (typeof Decoder === 'function') ? {data: Decoder(codec_input.bytes, codec_input.fPort)}" +
    " : {data: Decode(codec_input.fPort, codec_input.bytes, codec_input.variables)};";
  return vm.runInContext(`${source}\n;${call}`, context, {
    filename: codecPath,
    timeout: 1000,
  });
});
process.stdout.write(JSON.stringify(results));
