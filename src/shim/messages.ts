// The few task API messages the shim itself reads or writes (containerd.task.v2/v3 share field numbers;
// see proto/containerd/task/). Everything else is forwarded as opaque bytes, so only these fields are
// decoded, with the TTRPC library's protobuf reader: the daemon decodes Create before it can answer
// containerd, and loading a general protobuf runtime there would sit on every container's start path.
import { Reader, WIRE_BYTES, WIRE_VARINT } from '../ttrpc/protobuf';

export const TASK_SERVICES = new Set(['containerd.task.v2.Task', 'containerd.task.v3.Task']);

/** Reads string fields 1 and 2 (CreateTaskRequest id/bundle, DeleteRequest id/exec_id, ...). */
function twoStrings(buf: Buffer): [string, string] {
  const r = new Reader(buf);
  const out: [string, string] = ['', ''];
  while (!r.done) {
    const tag = r.tag();
    const field = tag >>> 3;
    if ((field === 1 || field === 2) && (tag & 7) === WIRE_BYTES) out[field - 1] = r.string();
    else r.skip(tag & 7);
  }
  return out;
}

/** CreateTaskRequest: id=1, bundle=2 (the rest stays in the forwarded bytes). */
export function decodeCreateTaskRequest(buf: Buffer): { id: string; bundle: string } {
  const [id, bundle] = twoStrings(buf);
  return { id, bundle };
}

/** DeleteRequest / StartRequest / WaitRequest shape: id=1, exec_id=2. */
export function decodeIdExec(buf: Buffer): { id: string; execId: string } {
  const [id, execId] = twoStrings(buf);
  return { id, execId };
}

function stringField(field: number, s: string): Buffer {
  const body = Buffer.from(s);
  if (body.length > 127) {
    // Two-byte length varint covers ids up to 16 KiB, far beyond containerd's limits.
    return Buffer.concat([Buffer.from([(field << 3) | WIRE_BYTES, (body.length & 0x7f) | 0x80, body.length >> 7]), body]);
  }
  return Buffer.concat([Buffer.from([(field << 3) | WIRE_BYTES, body.length]), body]);
}

/** ShutdownRequest{string id=1; bool now=2}. */
export function encodeShutdownRequest(id: string, now: boolean): Buffer {
  const parts = [];
  if (id) parts.push(stringField(1, id));
  if (now) parts.push(Buffer.from([(2 << 3) | WIRE_VARINT, 1]));
  return Buffer.concat(parts);
}

/** ConnectRequest{string id=1}. */
export function encodeConnectRequest(id: string): Buffer {
  return id ? stringField(1, id) : Buffer.alloc(0);
}

/** StateRequest{string id=1; string exec_id=2}, for the task itself. */
export const encodeStateRequest = encodeConnectRequest;

/** ConnectResponse{uint32 shim_pid=1; uint32 task_pid=2; string version=3}. */
export function decodeConnectResponse(buf: Buffer): { shimPid: number; taskPid: number; version: string } {
  const r = new Reader(buf);
  const out = { shimPid: 0, taskPid: 0, version: '' };
  while (!r.done) {
    const tag = r.tag();
    const wire = tag & 7;
    switch (tag >>> 3) {
      case 1: if (wire === WIRE_VARINT) { out.shimPid = r.uint32(); continue; } break;
      case 2: if (wire === WIRE_VARINT) { out.taskPid = r.uint32(); continue; } break;
      case 3: if (wire === WIRE_BYTES) { out.version = r.string(); continue; } break;
    }
    r.skip(wire);
  }
  return out;
}
