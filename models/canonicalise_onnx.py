#!/usr/bin/env python3
"""Renames an ONNX graph's internal values, initialisers and nodes in node order (subgraphs of
Loop / If included, depth first), so a converter whose generated names vary between runs
(tf2onnx numbers constant-folding outputs from a global counter and records the source path)
produces the same bytes every time. The model's inputs and outputs keep their names; node
order (already topological) and every weight are unchanged.

Usage: canonicalise_onnx.py <in.onnx> <out.onnx>
"""
import hashlib
import heapq
import sys

import onnx


class Renamer:
    def __init__(self, keep):
        self.keep, self.names, self.nodes = keep, {}, 0

    def __call__(self, name):
        if not name or name in self.keep:
            return name
        if name not in self.names:
            self.names[name] = f"v{len(self.names)}"
        return self.names[name]

    def graph(self, g):
        g.doc_string = ""  # tf2onnx writes the source path here
        for v in list(g.input) + list(g.output):
            v.name = self(v.name)
        for node in g.node:
            node.name = f"n{self.nodes}_{node.op_type}"
            self.nodes += 1
            node.input[:] = [self(n) for n in node.input]
            node.output[:] = [self(n) for n in node.output]
            for attr in node.attribute:
                if attr.HasField("g"):
                    self.graph(attr.g)
                for sub in attr.graphs:
                    self.graph(sub)
        for t in g.initializer:
            t.name = self(t.name)
        inits = sorted(g.initializer, key=lambda t: int(t.name[1:]) if t.name[1:].isdigit() else -1)
        del g.initializer[:]
        g.initializer.extend(inits)
        for vi in g.value_info:
            vi.name = self(vi.name)
        vis = sorted(g.value_info, key=lambda v: v.name)
        del g.value_info[:]
        g.value_info.extend(vis)


def content_order(g, outer=None):
    """Sorts nodes topologically, ties broken by a hash of what each node computes (op, attributes,
    and the hashes of its inputs), which does not depend on names or the converter's order."""
    init = {t.name: hashlib.sha256(t.SerializeToString().replace(t.name.encode(), b"")).hexdigest()
            for t in g.initializer}
    orig = []
    for n in g.node:
        c = onnx.NodeProto()
        c.CopyFrom(n)
        orig.append(c)
    producer = {o: i for i, n in enumerate(orig) for o in n.output}
    inputs = {v.name: k for k, v in enumerate(g.input)} if outer else {}
    memo = {}

    def attr_key(a):
        if a.HasField("g") or len(a.graphs):
            subs = [a.g] if a.HasField("g") else list(a.graphs)
            return a.name + ":" + ",".join(n.op_type for s in subs for n in s.node)
        return a.SerializeToString().hex()

    def node_hash(i):
        if i not in memo:
            n = orig[i]
            h = hashlib.sha256(n.op_type.encode())
            for a in sorted(n.attribute, key=lambda a: a.name):
                h.update(attr_key(a).encode())
            for inp in n.input:
                h.update(tensor_hash(inp).encode())
            memo[i] = h.hexdigest()
        return memo[i]

    def tensor_hash(name):
        if name in init:
            return init[name]
        if name in producer:
            i = producer[name]
            return node_hash(i) + str(list(orig[i].output).index(name))
        if name in inputs:
            return "in:" + str(inputs[name])
        return outer(name) if outer else "in:" + name  # outer-scope value

    sys.setrecursionlimit(100000)
    def implicit(n):
        names = set(n.input)
        for a in n.attribute:
            for sub in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                for sn in sub.node:
                    names |= implicit(sn)
        return names

    deps = {i: {producer[x] for x in implicit(n) if x in producer} for i, n in enumerate(orig)}
    users = {i: [] for i in deps}
    for i, ds in deps.items():
        for d in ds:
            users[d].append(i)
    left = {i: len(ds) for i, ds in deps.items()}
    ready = [(node_hash(i), i) for i, c in left.items() if c == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        _, i = heapq.heappop(ready)
        order.append(i)
        for u in users[i]:
            left[u] -= 1
            if left[u] == 0:
                heapq.heappush(ready, (node_hash(u), u))
    if len(order) != len(orig):
        sys.exit("graph is not a DAG")
    del g.node[:]
    g.node.extend(orig[i] for i in order)
    for n in g.node:
        for a in n.attribute:
            for sub in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                content_order(sub, tensor_hash)


def main():
    model = onnx.load(sys.argv[1])
    g = model.graph
    content_order(g)
    Renamer({v.name for v in g.input} | {v.name for v in g.output}).graph(g)
    onnx.checker.check_model(model)
    onnx.save(model, sys.argv[2])


if __name__ == "__main__":
    main()
