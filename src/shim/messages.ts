// The few task API messages the shim itself reads or writes (containerd.task.v2/v3 share field numbers;
// see proto/). Everything else is forwarded as opaque bytes, so only these fields are decoded.
import { Reader, Writer } from 'protobufjs/minimal';

export const TASK_SERVICES = new Set(['containerd.task.v2.Task', 'containerd.task.v3.Task']);

/** CreateTaskRequest: id=1, bundle=2 (the rest stays in the forwarded bytes). */
export function decodeCreateTaskRequest(buf: Uint8Array): { id: string; bundle: string } {
  const r = Reader.create(buf);
  let id = '';
  let bundle = '';
  while (r.pos < r.len) {
    const tag = r.uint32();
    switch (tag >>> 3) {
      case 1: id = r.string(); break;
      case 2: bundle = r.string(); break;
      default: r.skipType(tag & 7);
    }
  }
  return { id, bundle };
}

/** DeleteRequest / StartRequest / WaitRequest shape: id=1, exec_id=2. */
export function decodeIdExec(buf: Uint8Array): { id: string; execId: string } {
  const r = Reader.create(buf);
  let id = '';
  let execId = '';
  while (r.pos < r.len) {
    const tag = r.uint32();
    switch (tag >>> 3) {
      case 1: id = r.string(); break;
      case 2: execId = r.string(); break;
      default: r.skipType(tag & 7);
    }
  }
  return { id, execId };
}

/** ShutdownRequest{string id=1; bool now=2}. */
export function encodeShutdownRequest(id: string, now: boolean): Uint8Array {
  const w = Writer.create();
  if (id) w.uint32(10).string(id);
  if (now) w.uint32(16).bool(true);
  return w.finish();
}

/** ConnectRequest{string id=1}. */
export function encodeConnectRequest(id: string): Uint8Array {
  const w = Writer.create();
  if (id) w.uint32(10).string(id);
  return w.finish();
}

/** ConnectResponse{uint32 shim_pid=1; uint32 task_pid=2; string version=3}. */
export function decodeConnectResponse(buf: Uint8Array): { shimPid: number; taskPid: number; version: string } {
  const r = Reader.create(buf);
  const out = { shimPid: 0, taskPid: 0, version: '' };
  while (r.pos < r.len) {
    const tag = r.uint32();
    switch (tag >>> 3) {
      case 1: out.shimPid = r.uint32(); break;
      case 2: out.taskPid = r.uint32(); break;
      case 3: out.version = r.string(); break;
      default: r.skipType(tag & 7);
    }
  }
  return out;
}
