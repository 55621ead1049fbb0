// Runs an ONNX model in ONNX Runtime (onnxruntime-node, CPU), an
// implementation independent of nabla, for scripts/check_onnx.py:
//   node run_ort.js MODEL.onnx IN.f32 d1,d2,... OUT.f32
// IN.f32 holds the input as raw little-endian float32 of the given shape
// (batch first); OUT.f32 gets the model's first output the same way, and its
// shape is printed on stdout.
'use strict';
const fs = require('fs');
const ort = require('onnxruntime-node');

async function main() {
  const [model, input, dims, output] = process.argv.slice(2);
  if (!output) {
    console.error('usage: node run_ort.js MODEL.onnx IN.f32 d1,d2,... OUT.f32');
    process.exit(2);
  }
  const shape = dims.split(',').map(Number);
  const buf = fs.readFileSync(input);
  const x = new Float32Array(buf.buffer, buf.byteOffset, buf.length / 4);
  const session = await ort.InferenceSession.create(model, { executionProviders: ['cpu'] });
  const feeds = { [session.inputNames[0]]: new ort.Tensor('float32', x, shape) };
  const result = await session.run(feeds);
  const y = result[session.outputNames[0]];
  fs.writeFileSync(output, Buffer.from(y.data.buffer, y.data.byteOffset, y.data.byteLength));
  console.log(y.dims.join(','));
}

main().catch((e) => {
  console.error(`run_ort: ${e.message}`);
  process.exit(1);
});
