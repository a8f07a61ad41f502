#!/usr/bin/env python3
"""Lists import circles between the files of a Rust source tree (default: src/)
and the edges between its rooms (its top-level modules). Exits 1 when there is
a circle. A file's references are its `crate::` and `super::` paths outside its
inline tests; a child using its parent is not a circle.

Usage: scripts/import-cycles.py [SRC_DIR] [--rooms]
"""
import os, re, sys

args = [a for a in sys.argv[1:] if not a.startswith('--')]
root = args[0] if args else 'src'
mods={}
for d,_,fs in os.walk(root):
    for f in fs:
        if not f.endswith('.rs') or f=='tests.rs' or d.endswith('/bin'): continue
        p=os.path.join(d,f); rel=os.path.relpath(p,root)[:-3]
        parts=rel.split('/')
        if parts[-1] in('mod','lib'): parts=parts[:-1]
        mods['::'.join(parts)]=p
def strip_tests(s):
    i=s.find('#[cfg(test)]\nmod tests {')
    return s if i<0 else s[:i]
edges={m:set() for m in mods}
for m,p in mods.items():
    s=strip_tests(open(p).read())
    s=re.sub(r'//[^\n]*','',s)
    parent=m.rsplit('::',1)[0] if '::' in m else ''
    refs=set()
    for r in re.findall(r'crate::([a-z_]+(?:::[a-z_]+)*)',s): refs.add(r)
    for r in re.findall(r'\bsuper::([a-z_]+(?:::[a-z_]+)*)',s):
        refs.add((parent+'::'+r) if parent else r)
    # use crate::x::{a, b::c}
    for grp in re.findall(r'crate::([a-z_:]+)::\{([^}]*)\}',s):
        for it in grp[1].split(','):
            it=it.strip().split('::')[0]
            if re.match(r'^[a-z_]+$',it): refs.add(grp[0]+'::'+it)
    for grp in re.findall(r'\bsuper::\{([^}]*)\}',s):
        for it in grp.split(','):
            it=it.strip().split('::')[0]
            if re.match(r'^[a-z_]+$',it): refs.add((parent+'::'+it) if parent else it)
    for grp in re.findall(r'\bsuper::([a-z_]+)::\{([^}]*)\}',s):
        for it in grp[1].split(','):
            it=it.strip().split('::')[0]
            if re.match(r'^[a-z_]+$',it): refs.add((parent+'::'+grp[0]+'::'+it) if parent else grp[0]+'::'+it)
    for r in refs:
        parts=r.split('::')
        for k in range(len(parts),0,-1):
            t='::'.join(parts[:k])
            if t in mods:
                if t!=m and not m.startswith(t+'::') : edges[m].add(t)
                break
# tarjan
idx={};low={};st=[];on=set();out=[];c=[0]
sys.setrecursionlimit(10000)
def sc(v):
    idx[v]=low[v]=c[0];c[0]+=1;st.append(v);on.add(v)
    for w in edges[v]:
        if w not in idx: sc(w);low[v]=min(low[v],low[w])
        elif w in on: low[v]=min(low[v],idx[w])
    if low[v]==idx[v]:
        comp=[]
        while True:
            w=st.pop();on.discard(w);comp.append(w)
            if w==v:break
        if len(comp)>1: out.append(comp)
for v in edges:
    if v not in idx: sc(v)
for comp in out: print('cycle:', ' <-> '.join(sorted(comp)))
# room level
room=lambda m: m.split('::')[0]
redges={}
for m,ts in edges.items():
    for t in ts:
        if room(t)!=room(m): redges.setdefault(room(m),set()).add(room(t))
if '--rooms' in sys.argv:
    for r in sorted(redges): print(r, '->', ', '.join(sorted(redges[r])))
sys.exit(1 if out else 0)
