"""The stacks of a breakpoint's hits: shared between hits, found in linear time.

A hit's stack is a :data:`~nopdb_lab.call_info.StackNode` linked list. Two ideas keep a
breakpoint hit at every level of a recursion linear in its depth, in memory and time:

- **Shared nodes.** Equal outer parts of stacks are one list: the nodes live in a tree
  keyed line → file → function from the outermost frame, so the hits of a recursion 5,000
  deep hold a few MB, not 870.
- **Open frames.** A hit walks its frames outward only until it meets an *open* frame: a
  frame an earlier hit of the same recursion was in, still running. The callers of a
  running frame cannot change while it runs (each waits in the call that led to it), so
  the node of its caller, kept when it was hit, still describes them, and the walk stops
  there. A hit's frame is opened only when it is nested in an open frame, or when its walk
  was long (``OPEN_FROM_DEPTH``) and another frame of its code is near it
  (``RECURSION_WINDOW``): a recursion. A generator's or coroutine's frame is never opened
  (its callers change each time it resumes).

An open frame is closed when it returns or unwinds: the dispatcher reports exits of its
code object while any of its frames is open (``Dispatcher.watch_exits``), so no frame is
held after it ended and nothing is paid outside a recursion. An exit that went unseen
(tracing switched off by another tool) closes the frame at the thread's next hit, whose
walk does not meet it.

Which frames are open is per thread: another thread's frames never appear on this
thread's stack.
"""

from __future__ import annotations

import threading
import weakref
from types import CodeType, FrameType
from typing import Any, Callable, Dict, List, Tuple

from .call_info import StackNode
from .tracing.dispatch import DISPATCHER
from .tracing.plan import code_is_generator

# a tree of shared stack nodes: line -> file -> function -> [the node, the tree of its
# callees]. Nested by line, file and name: strings and small ints hash in no time (a code
# object's hash is computed anew each time, 100-300 ns)
NodeTree = Dict[int, Dict[str, Dict[str, List[Any]]]]

#: a hit looks for a recursion only when it walked more frames than this: below, a walk
#: is short anyway, and a hit pays nothing for the search
OPEN_FROM_DEPTH = 64
#: how far out from a hit's frame the search for another frame of its code goes: direct
#: and mutual recursion, and a module's forward calling a submodule of its own class
#: (three frames a level), are found; a longer period walks as before
RECURSION_WINDOW = 16


class _OpenFrames:
    """One thread's open frames: frame -> (its position, its caller's node and tree).

    Positions count from the outermost open frame; ``frames`` lists them in that order.
    Only the owning thread changes them in place; another thread that starts over
    replaces them (under the lock), so a walk that read them keeps a consistent pair.
    """

    __slots__ = ("epoch", "frames", "index", "__weakref__")

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        self.frames: List[FrameType] = []
        self.index: Dict[FrameType, Tuple[int, StackNode | None, NodeTree]] = {}


class SharedStacks:
    """The stack nodes of one breakpoint's hits (see the module's docstring).

    ``max_nodes`` bounds the tree: past it the tree starts over (a bound, not a cache
    policy; the hits keep the nodes they use).
    """

    def __init__(self, max_nodes: int) -> None:
        self._max_nodes = max_nodes
        self._tree: NodeTree = {}
        self._node_count = 0
        self._epoch = 0
        self._local = threading.local()
        self._states: "weakref.WeakSet[_OpenFrames]" = weakref.WeakSet()
        self._lock = threading.Lock()
        #: open frames per code object, over all threads (its exits are watched while > 0)
        self._open_per_code: Dict[CodeType, int] = {}
        self._on_exit = _weak_exit_callback(self)
        #: frames visited by the walks of all hits (the walk is linear: tests count it)
        self.frames_walked = 0

    # -- a hit -------------------------------------------------------------------------
    def node(self, frame: FrameType) -> StackNode:
        """The stack ending at ``frame``, sharing every node it can with earlier ones."""
        if self._node_count > self._max_nodes:
            self.start_over()
        state: _OpenFrames | None = getattr(self._local, "state", None)
        if state is None or state.epoch != self._epoch:
            state = self._new_state()
        index = state.index
        walked: List[FrameType] = []
        f: FrameType | None = frame
        found: Tuple[int, StackNode | None, NodeTree] | None = None
        if index:
            while f is not None:  # a loop, no recursion
                found = index.get(f)
                if found is not None:
                    break
                walked.append(f)
                f = f.f_back
        else:  # no open frame in this thread (the usual hit): no lookup per frame
            while f is not None:
                walked.append(f)
                f = f.f_back
        self.frames_walked += len(walked)
        node: StackNode | None
        if found is not None and f is not None:
            position, node, tree = found
            if len(state.frames) > position + 1:
                self._close(state, position + 1)  # deeper open frames no longer run
            walked.append(f)  # the open frame itself, at its current line
        else:
            if index:
                self._close(state, 0)  # none of them runs in this thread any more
            node, tree = None, self._tree
        caller_node, caller_tree = node, tree
        for f in reversed(walked):  # outermost first
            caller_node, caller_tree = node, tree
            f_code = f.f_code
            line = f.f_lineno
            file = f_code.co_filename
            name = f_code.co_name
            by_file = tree.get(line)
            if by_file is None:
                by_file = tree[line] = {}
            by_name = by_file.get(file)
            if by_name is None:
                by_name = by_file[file] = {}
            entry = by_name.get(name)
            if entry is None:
                entry = by_name[name] = [(node, file, line, name), {}]
                self._node_count += 1
            node, tree = entry
        assert node is not None  # the loop ran at least for ``frame``
        if found is not None:
            if walked[-1] is not frame:  # a hit nested in an open frame (else: hit again)
                self._open(state, frame, caller_node, caller_tree)
        elif len(walked) > OPEN_FROM_DEPTH:
            code = frame.f_code
            for f in walked[1:RECURSION_WINDOW]:
                if f.f_code is code:  # a recursion: the next level's hit stops here
                    self._open(state, frame, caller_node, caller_tree)
                    break
        return node

    # -- open and closed frames ----------------------------------------------------------
    def _new_state(self) -> _OpenFrames:
        with self._lock:
            state = _OpenFrames(self._epoch)
            self._states.add(state)
        self._local.state = state
        return state

    def _open(
        self, state: _OpenFrames, frame: FrameType, caller: StackNode | None, tree: NodeTree
    ) -> None:
        code = frame.f_code
        if code_is_generator(code):
            return
        with self._lock:
            if state.epoch != self._epoch:  # started over meanwhile (another thread)
                return
            state.index[frame] = (len(state.frames), caller, tree)
            state.frames.append(frame)
            count = self._open_per_code.get(code, 0)
            self._open_per_code[code] = count + 1
            if count == 0:
                DISPATCHER.watch_exits(code, self._on_exit)

    def _close(self, state: _OpenFrames, position: int) -> None:
        """Close the thread's open frames from ``position`` on (inner ones first)."""
        with self._lock:
            if state.epoch != self._epoch:
                return
            frames, index = state.frames, state.index
            while len(frames) > position:
                frame = frames.pop()
                del index[frame]
                code = frame.f_code
                count = self._open_per_code[code] - 1
                if count:
                    self._open_per_code[code] = count
                else:
                    del self._open_per_code[code]
                    DISPATCHER.unwatch_exits(code, self._on_exit)

    def frame_exited(self, frame: FrameType) -> None:
        """A frame of a watched code object returned or unwound."""
        state: _OpenFrames | None = getattr(self._local, "state", None)
        if state is None:
            return
        found = state.index.get(frame)
        if found is not None:
            self._close(state, found[0])

    def start_over(self) -> None:
        """Drop the tree and close every open frame, in every thread."""
        with self._lock:
            self._epoch += 1
            self._tree = {}
            self._node_count = 0
            for state in list(self._states):
                state.frames = []
                state.index = {}
            for code in self._open_per_code:
                DISPATCHER.unwatch_exits(code, self._on_exit)
            self._open_per_code = {}

    @property
    def open_frames(self) -> int:
        """How many frames are open, over all threads."""
        return sum(self._open_per_code.values())


def _weak_exit_callback(stacks: SharedStacks) -> Callable[[FrameType], None]:
    """An exit callback that does not keep ``stacks`` (and its breakpoint) alive."""
    ref = weakref.ref(stacks)

    def exited(frame: FrameType) -> None:
        target = ref()
        if target is not None:
            target.frame_exited(frame)

    return exited
