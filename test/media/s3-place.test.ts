// Which S3 store a medium talks to and what the catalog records of it (s3-place.ts), without
// a store: the endpoint and addressing from the options and the environment, recorded
// without credentials written into the URL, and the precedence when reading a recorded
// object back (an endpoint given, by flag or AWS_ENDPOINT_URL, wins; the recorded
// addressing goes with the recorded endpoint).
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { optionsForRecorded, placeSuffix, recordedPlace, s3Place } from '../../src/media/s3/s3-place.js';
import type { MediaPosition } from '../../src/media/medium.js';
import { s3Error } from '../../src/media/s3/s3-client.js';

const VARS = ['AWS_ENDPOINT_URL', 'IMGSTREAM_S3_PATH_STYLE'] as const;
let saved: Record<string, string | undefined>;
beforeEach(() => {
  saved = Object.fromEntries(VARS.map((k) => [k, process.env[k]]));
  for (const k of VARS) delete process.env[k];
});
afterEach(() => {
  for (const k of VARS) if (saved[k] === undefined) delete process.env[k];
  else process.env[k] = saved[k];
});

const onCeph: MediaPosition = { kind: 's3', location: 's3://dumps/vm/l0', endpoint: 'http://ceph1:7480', pathStyle: true };

describe('the S3 store a medium uses and records', () => {
  it('records the endpoint and path-style from the flags or the environment, nothing for AWS', () => {
    expect(recordedPlace(s3Place({}))).toEqual({});
    expect(recordedPlace(s3Place({ endpoint: 'http://ceph1:7480', pathStyle: true }))).toEqual({ endpoint: 'http://ceph1:7480', pathStyle: true });
    process.env.AWS_ENDPOINT_URL = 'https://minio.example:9000';
    process.env.IMGSTREAM_S3_PATH_STYLE = '1';
    expect(recordedPlace(s3Place({}))).toEqual({ endpoint: 'https://minio.example:9000', pathStyle: true });
    process.env.AWS_ENDPOINT_URL = ''; // empty: not set
    expect(recordedPlace(s3Place({}))).toEqual({ pathStyle: true });
  });

  it('never records a user name or password written into the endpoint URL', () => {
    const r = recordedPlace(s3Place({ endpoint: 'http://AKIDEXAMPLE:wJalrXUtnFEMI@ceph1:7480' }));
    expect(r).toEqual({ endpoint: 'http://ceph1:7480/' });
    expect(JSON.stringify(r)).not.toMatch(/AKIDEXAMPLE|wJalrXUtnFEMI/);
  });

  it('reads a recorded object from its recorded store unless an endpoint is given; a given one wins with its own addressing', () => {
    expect(optionsForRecorded(onCeph, {})).toEqual({ endpoint: 'http://ceph1:7480', pathStyle: true });
    expect(optionsForRecorded({ kind: 's3', location: 's3://b/k' }, {})).toEqual({}); // recorded without a store: AWS, or what the environment says
    expect(optionsForRecorded(onCeph, { endpoint: 'http://ceph2:7480' })).toEqual({ endpoint: 'http://ceph2:7480' });
    expect(s3Place(optionsForRecorded(onCeph, { endpoint: 'http://ceph2:7480', pathStyle: true }))).toEqual({ endpoint: 'http://ceph2:7480', pathStyle: true });
    process.env.AWS_ENDPOINT_URL = 'http://ceph3:7480';
    expect(s3Place(optionsForRecorded(onCeph, {}))).toEqual({ endpoint: 'http://ceph3:7480', pathStyle: false });
    process.env.IMGSTREAM_S3_PATH_STYLE = '1';
    expect(s3Place(optionsForRecorded(onCeph, {}))).toEqual({ endpoint: 'http://ceph3:7480', pathStyle: true });
  });

  it('shows where an object is: the store after the key, nothing for AWS', () => {
    expect(placeSuffix(onCeph)).toBe(' at http://ceph1:7480 (path-style)');
    expect(placeSuffix({ kind: 's3', location: 's3://b/k' })).toBe('');
    expect(placeSuffix({ kind: 'file', location: '/b/k' })).toBe('');
  });
});

describe('an S3 error without a region', () => {
  it('is one line saying to set AWS_REGION (exit 4), not the SDK\'s "Region is missing"', () => {
    const e = s3Error(new Error('Region is missing'), 's3://backups/vm1/l0', 'checking the bucket');
    expect(e.message).toBe('s3://backups/vm1/l0: checking the bucket: no AWS region is set');
    expect(e.hint).toMatch(/set AWS_REGION/);
    expect(e.exitCode).toBe(4);
  });
});

