// Runs face-api (the oracle of nbcnn's face encoder and face detector) on raw RGB pixels.
//
// Not run by the tests: tests/record_faceapi.py prepares the inputs, runs this script and writes
// tests/data/faceapi_oracle.json, which the tests read (they need neither node nor face-api).
//
// Setup (node 20, npm registry only; face-api's own bundled build `face-api.esm.js` needs a
// browser, and `face-api.node.js` needs the native @tensorflow/tfjs-node):
//
//   mkdir /tmp/faceapi_node && cd /tmp/faceapi_node && npm init -y
//   npm pack @vladmandic/face-api@1.7.15
//   npm install @tensorflow/tfjs@4.22.0 @tensorflow/tfjs-backend-wasm@4.22.0 ./vladmandic-face-api-1.7.15.tgz
//   node /path/to/nbcnn/tests/record_faceapi.js job.json results.json   (NODE_PATH=/tmp/faceapi_node/node_modules)
//
// It uses face-api's node build for the wasm backend (`dist/face-api.node-wasm.js`, which takes
// @tensorflow/tfjs 4.22.0, the version face-api 1.7.15 bundles) and then switches tfjs to its
// plain JavaScript `cpu` backend: float32 arithmetic, no native code.
//
// job.json: {"models": DIR with the two models' manifests and .bin files,
//            "inputs": [{"name", "pixels": FILE of height*width*3 uint8 RGB bytes, row-major,
//                        "height", "width", "task": "descriptor" | "detect" | "grid",
//                        "input_size" (detect, grid), "score_threshold" (detect)}]}
// results.json: {"versions": {...}, "backend": "cpu", "results": [{"name", "task", ...}]}
//   descriptor: the 128 numbers of FaceRecognitionNet.computeFaceDescriptor (input 150x150)
//   detect:     TinyFaceDetector.locateFaces boxes [x1, y1, x2, y2] in input pixels and scores
//   grid:       TinyFaceDetector.forward: the raw (1, 13, 13, 25) output, before any sigmoid

'use strict';

const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs');
const faceapi = require('@vladmandic/face-api/dist/face-api.node-wasm.js');

function imageTensor(input) {
  const bytes = fs.readFileSync(input.pixels);
  const expected = input.height * input.width * 3;
  if (bytes.length !== expected) {
    throw new Error(`${input.pixels}: ${bytes.length} bytes, expected ${input.height}x${input.width}x3 = ${expected}`);
  }
  return tf.tensor3d(new Uint8Array(bytes), [input.height, input.width, 3], 'int32');
}

async function run(input) {
  const image = imageTensor(input);
  try {
    if (input.task === 'descriptor') {
      if (input.height !== 150 || input.width !== 150) throw new Error(`${input.name}: a descriptor input is 150x150`);
      const descriptor = await faceapi.nets.faceRecognitionNet.computeFaceDescriptor(image);
      return { descriptor: Array.from(descriptor) };
    }
    if (input.task === 'detect') {
      const options = new faceapi.TinyFaceDetectorOptions({ inputSize: input.input_size, scoreThreshold: input.score_threshold });
      const faces = await faceapi.nets.tinyFaceDetector.locateFaces(image, options);
      return {
        boxes: faces.map((f) => [f.box.x, f.box.y, f.box.x + f.box.width, f.box.y + f.box.height]),
        scores: faces.map((f) => f.score),
      };
    }
    if (input.task === 'grid') {
      const out = await faceapi.nets.tinyFaceDetector.forward(image, input.input_size);
      const grid = { shape: out.shape, values: Array.from(await out.data()) };
      out.dispose();
      return grid;
    }
    throw new Error(`${input.name}: unknown task ${input.task}`);
  } finally {
    image.dispose();
  }
}

async function main() {
  const [jobPath, resultsPath] = process.argv.slice(2);
  if (!jobPath || !resultsPath) throw new Error('usage: node record_faceapi.js job.json results.json');
  const job = JSON.parse(fs.readFileSync(jobPath, 'utf8'));
  await tf.setBackend('cpu');
  await tf.ready();
  await faceapi.nets.faceRecognitionNet.loadFromDisk(job.models);
  await faceapi.nets.tinyFaceDetector.loadFromDisk(job.models);
  const results = [];
  for (const input of job.inputs) {
    results.push({ name: input.name, task: input.task, ...(await run(input)) });
  }
  const versions = { 'face-api': faceapi.version, tfjs: tf.version.tfjs, node: process.versions.node };
  fs.writeFileSync(resultsPath, JSON.stringify({ versions, backend: tf.getBackend(), results }));
  console.log(`${results.length} results from face-api ${faceapi.version} on tfjs ${tf.version.tfjs} (${tf.getBackend()}) -> ${path.resolve(resultsPath)}`);
}

main().catch((error) => { console.error(error); process.exit(1); });
