"""Segment all: FCFI proposals for every object of the slice (or stack) into a proposals layer.

The proposals come from :func:`napari_fcfi.annotation.proposals.iter_segment_all`, run in a napari
worker thread (progress bar, Cancel) with the widget's model, device and channel. They land in a
helper labels layer ``<image> FCFI proposals`` (never in the user's labels): each proposal has its
own id there. The user then

* **accepts all** proposals, or clicks one (it is selected) and presses **A** (accept), **D**
  (delete) or **C** (correct); the buttons do the same;
* accepting commits the proposal like any object (never-overwrite rule, label id, journal, click
  log: a clicks step starting from the proposal, marked segment-all, so ``fcfi segment`` replays it);
* undo of an acceptance (Ctrl+Z on the labels or the proposals layer) puts the proposals back, and a
  deleted proposal comes back with Ctrl+Z on the proposals layer (:mod:`.proposal_history`); redo
  takes them again;
* correcting makes the proposal the object in progress on its slice, as editing a label does: clicks
  refine it and Commit writes it; undoing the correction (Ctrl+Z past its clicks) or resetting the
  object (Esc) puts the proposal back.

Correcting refuses while the slice has another object in progress (commit or reset it first);
accepting refuses only proposals that overlap the object in progress, so no work is lost.
"""

from __future__ import annotations

import itertools
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, ProgressBar, PushButton, SpinBox
from napari.layers import Labels

from napari_fcfi.annotation.geometry import SliceKey, describe_slices, read_plane
from napari_fcfi.annotation.proposal_links import link_to_previous
from napari_fcfi.annotation.proposals import drop_labelled, iter_segment_all

from . import layers as helpers
from .background import BackgroundRun, run_generator
from .commit_flow import commit_proposal, commits_as_one
from .host import AnnotationHost, HostOwner
from .image_state import ImageState
from .journaling import UNDO_KEYS
from .labels_watch import LabelsEditWatch
from .proposal_history import ProposalHistory, slices_holding
from .segment_all_words import CommitProgress, refusal_notes, sizes_note

ROLE = helpers.PROPOSALS_ROLE
ACTIONS = "; click one, then A / D / C, or Accept all"
#: A proposal that covers at least this share of an existing label (on a slice) is that object again
#: (e.g. the whole nucleus around a label made with one click): accepting it would paint a ring around
#: the label, so it stays a proposal (C makes it the object in progress, D deletes it).
COVERED_LABEL_SHARE = 0.5
AWAITED = "FCFI: the object in progress is still being predicted; accept when its mask shows"


@dataclass
class Proposal:
    """One proposal: its id in the proposals layer and the slices it lies on (several when it was
    linked across slices)."""

    state: ImageState
    layer: Labels
    label: int
    keys: list[SliceKey]

    def mask(self, key: SliceKey) -> np.ndarray:
        return np.asarray(self.layer.data[key] if key else self.layer.data) == self.label


class SegmentAllPanel(Container):
    """Segment all, then accept, delete or correct the proposals (see the module docstring)."""

    def __init__(self, owner: HostOwner) -> None:
        self.owner = owner
        self.scope = ComboBox(
            label="Segment all",
            choices=[("this slice", "slice"), ("every slice", "stack")],
            value="slice",
            tooltip="Propose every object of the slice on screen or of every slice",
        )
        self.link = CheckBox(
            text="link slices into 3D objects",
            value=True,
            tooltip="Every slice: a proposal continuing one on the slice before (overlap IoU >= 0.25) "
            "keeps its id, so Accept commits the whole object with one label id",
        )
        self.object_size = SpinBox(
            label="object size",
            min=0,
            max=10_000,
            value=0,
            tooltip="Expected object diameter in pixels (0: estimated from the image, or the median of 3 or "
            "more labelled objects where the estimate is far from it)",
        )
        self.run_button = PushButton(
            text="Segment all", tooltip="Propose an object for every seed, in the background"
        )
        self.cancel_button = PushButton(
            text="Cancel", enabled=False, tooltip="Stop; proposals so far are kept"
        )
        self.progress = ProgressBar(label="", min=0, max=1, value=0, visible=False)
        self.accept_all_button = PushButton(
            text="Accept all", tooltip="Commit every proposal into the labels"
        )
        self.accept_button = PushButton(text="Accept", tooltip="Commit the selected proposal (A)")
        self.delete_button = PushButton(text="Delete", tooltip="Drop the selected proposal (D)")
        self.correct_button = PushButton(
            text="Correct",
            tooltip="Make the selected proposal the object in progress and refine it with clicks (C)",
        )
        super().__init__(
            widgets=[
                self.scope,
                self.link,
                self.object_size,
                Container(widgets=[self.run_button, self.cancel_button], layout="horizontal", labels=False),
                self.progress,
                Container(
                    widgets=[
                        self.accept_all_button,
                        self.accept_button,
                        self.delete_button,
                        self.correct_button,
                    ],
                    layout="horizontal",
                    labels=False,
                ),
            ],
            labels=True,
        )
        self.run_button.changed.connect(lambda: self.start())
        self.cancel_button.changed.connect(lambda: self.cancel())
        self.accept_all_button.changed.connect(lambda: self.accept_all())
        self.accept_button.changed.connect(lambda: self.accept())
        self.delete_button.changed.connect(lambda: self.delete())
        self.correct_button.changed.connect(lambda: self.correct())
        self.selected: int | None = None
        self._run: BackgroundRun | None = None
        # Undo of an acceptance or a deletion brings the proposals back (and redo takes them again).
        self.history = ProposalHistory(
            lambda: self.controller.viewer, lambda message: self.controller.show_status(message)
        )

    @property
    def controller(self) -> AnnotationHost:
        return self.owner.controller

    # ------------------------------------------------------------------ the proposals layer
    def proposals_layer(self, create: bool = False) -> Labels | None:
        """The proposals layer of the image being annotated (created on demand)."""
        state = self.controller.state
        if state is None:
            return None
        viewer = self.controller.viewer
        for layer in viewer.layers:
            if (
                helpers.role_of(layer) == (ROLE, state.image_id)
                and tuple(layer.data.shape) == state.geometry.label_shape
            ):
                return layer
        if not create:
            return None
        geometry = state.geometry
        layer = viewer.add_labels(
            np.zeros(geometry.label_shape, np.int32),
            name=f"{state.layer.name} FCFI proposals",
            scale=geometry.scale,
            translate=geometry.translate,
            opacity=0.45,
            metadata={helpers.TAG: {"role": ROLE, "image": state.image_id}},
        )
        layer.contour = 2  # outlines: proposals stay distinguishable from committed (filled) labels
        layer.mouse_drag_callbacks.append(self._on_press)
        for key, action in (
            ("a", self.accept),
            ("d", self.delete),
            ("c", self.correct),
            (UNDO_KEYS[0], lambda: self.history.undo(self._commit_labels())),
            (UNDO_KEYS[1], lambda: self.history.redo(self._commit_labels())),
        ):
            layer.bind_key(key, lambda _layer, act=action: act(), overwrite=True)
        helpers.keep_on_top(viewer, state.preview_layer, state.clicks_layer)
        return layer

    def follow_commits(self) -> None:
        """Proposals under an object the user committed with clicks leave (the widget calls this after
        every change; :meth:`ProposalHistory.follow_commits`)."""
        layer, labels = self.proposals_layer(), self._commit_labels()
        if layer is not None and labels is not None and (gone := self.history.follow_commits(labels, layer)):
            status = self.controller.viewer.status
            self.controller.show_status(f"{status}; {gone} proposal(s) under it left {layer.name!r}")

    def _commit_labels(self) -> Labels | None:
        """The labels layer the image's commits go to (None before the first)."""
        state = self.controller.state
        return None if state is None else state.labels_layer

    def _plane(self, layer: Labels, key: SliceKey) -> np.ndarray:
        return layer.data[key] if key else layer.data

    @staticmethod
    def _labels_plane(labels: Labels, key: SliceKey) -> np.ndarray:
        """A slice of the user's labels (level 0 of a multiscale layer)."""
        data = helpers.image_data(labels)
        return np.asarray(data[key] if key else data)

    def _on_press(self, layer: Labels, event: Any) -> None:
        value = layer.get_value(event.position, world=True)
        self.select(int(value) if value else None)
        if not value:  # a click beside every proposal: say what clicks do while this layer is selected
            state = self.controller.state
            clicks = f"select {state.clicks_layer.name!r} to annotate with clicks" if state else ""
            self.controller.show_status(f"FCFI: no proposal there (clicks select proposals); {clicks}")

    def select(self, proposal: int | None) -> None:
        """Select a proposal (its id in the proposals layer) for Accept / Delete / Correct."""
        self.selected = proposal or None
        layer = self.proposals_layer()
        if layer is not None and self.selected:
            layer.selected_label = self.selected
            self.controller.show_status(
                f"FCFI: proposal {self.selected} selected: A accept, D delete, C correct"
            )

    def select_at(self, world_position: Any) -> None:
        layer = self.proposals_layer()
        if layer is not None:
            value = layer.get_value(world_position, world=True)
            self.select(int(value) if value else None)

    # ------------------------------------------------------------------ running
    def _keys(self, state: ImageState, key: SliceKey) -> list[SliceKey]:
        if self.scope.value == "slice":
            return [key]
        return list(itertools.product(*(range(n) for n in state.geometry.slice_shape)))

    def start(self, threaded: bool = True) -> BackgroundRun | None:
        controller = self.controller
        state, key_on_screen = controller.state, controller.current_key()
        if state is None or key_on_screen is None:
            controller.show_status("FCFI: choose an image first")
            return None
        if self._run is not None:
            controller.show_status("FCFI: segment all is already running")
            return None
        keys = self._keys(state, key_on_screen)
        geometry, settings, cache = state.geometry, controller.settings, controller.model_cache
        image, channel = helpers.image_data(state.layer), state.channel
        engine_settings = dict(controller.engine_settings)
        object_size = float(self.object_size.value) or None
        users = self._commit_labels()  # objects labelled there already are not proposed again
        users_data = None if users is None else helpers.image_data(users)
        edits = LabelsEditWatch(users)  # the labels changed during the run: their slices are checked again
        layer = self.proposals_layer(create=True)
        if layer is None:  # no image (checked above)
            return None
        if users is not None:  # later commits with clicks take the proposals under them away
            self.history.follow_commits(users, layer, since_now=True)
        run = BackgroundRun()
        self._run = run
        first_id = int(layer.data.max()) + 1  # ids of earlier runs on other slices stay unique
        tally = {"proposals": 0, "slices": 0, "next_id": first_id}
        link_axis = len(geometry.slice_shape) - 1 if self.link.value and len(keys) > 1 else None
        segmented: set[SliceKey] = set()
        known: set[int] = set()  # the labelled objects on the slices done
        sizes: list[tuple[float, str | None]] = []  # each slice's object size and where it came from

        def objects() -> int:
            return tally["next_id"] - first_id

        def left_out_note() -> str:
            now = self._commit_labels()
            if not known or now is None:
                return ""
            return f"; {len(known)} object(s) already in {now.name!r} not proposed again"

        def labelled_plane(key: SliceKey) -> np.ndarray | None:
            """The user's labels of the slice, copied (commits go on meanwhile); their objects get no seed."""
            if users_data is None:
                return None
            plane = np.array(users_data[key] if key else users_data)
            return plane if plane.shape == geometry.plane_shape else None

        def labelled_ids(plane: np.ndarray | None) -> list[int]:
            return [] if plane is None else np.unique(plane[plane > 0]).tolist()

        controller.background_runs.add(run)  # closing the viewer or dock detaches it

        def work():
            if settings.cpu_threads and settings.device.startswith("cpu"):
                import torch

                torch.set_num_threads(settings.cpu_threads)
            model = cache.get(settings.model_source, settings.device)
            for index, key in enumerate(keys):
                labelled = labelled_plane(key)
                steps = iter_segment_all(
                    model,
                    read_plane(image, geometry, key),
                    object_size=object_size,
                    channel_axis=geometry.slice_channel_axis(),
                    channel=channel,
                    labelled=labelled,
                    **engine_settings,
                )
                while True:
                    if run.cancelled:
                        return
                    try:
                        done, total = next(steps)
                    except StopIteration as stop:
                        yield "slice", key, stop.value, labelled_ids(labelled)
                        break
                    yield "progress", index, (done / max(total, 1))

        def on_item(item: tuple[Any, ...]) -> None:
            if item[0] == "progress":
                self.progress.value = int(1000 * (item[1] + item[2]))
                return
            _, key, result, ids = item
            if layer not in controller.viewer.layers:
                return
            if result.labels.shape != self._plane(layer, key).shape:  # never paint a wrong-shaped result
                controller.show_status(f"FCFI: {result.message or 'segment all: no result for this slice'}")
                return
            previous = None
            if link_axis is not None and key[link_axis] > 0:
                before = (*key[:link_axis], key[link_axis] - 1, *key[link_axis + 1 :])
                previous = np.asarray(self._plane(layer, before)) if before in segmented else None
            now = self._commit_labels()
            new = result.labels
            if now is not None and (now is not users or edits.changed()):  # committed meanwhile
                plane = self._labels_plane(now, key)
                new = drop_labelled(new, plane)[0]
                ids = np.unique(plane[plane > 0]).tolist()
            known.update(ids)
            labels, tally["next_id"] = link_to_previous(previous, new, tally["next_id"])
            self._plane(layer, key)[...] = labels
            segmented.add(key)
            layer.refresh()
            found = int(np.unique(new[new > 0]).size)
            tally["proposals"] += found
            tally["slices"] += 1
            if result.object_size is not None:
                sizes.append((float(result.object_size), result.size_from))
            size = sizes_note(sizes[-1:], now)
            left_out = left_out_note() if ids else ""
            if result.message:
                controller.show_status(f"FCFI: {result.message}")
            elif len(keys) == 1:
                controller.show_status(f"FCFI: {found} proposal(s){size}{left_out}{ACTIONS}")
            else:
                controller.show_status(
                    f"FCFI: {found} proposal(s) on {describe_slices([key])}{size}; "
                    f"{objects()} object(s) on {tally['slices']} of {len(keys)} slices so far{left_out}"
                )

        def on_done(*_: Any) -> None:
            self._run = None
            edits.close()
            self.cancel_button.enabled, self.run_button.enabled = False, True
            self.progress.visible = False
            if run.cancelled:
                controller.show_status(
                    f"FCFI: segment all cancelled after {tally['slices']} of {len(keys)} slice(s); "
                    f"its {tally['proposals']} new proposal(s) are kept, and the proposals of slices it "
                    "did not reach stay as they were"
                )
            elif len(keys) > 1:
                how = "linked across slices" if link_axis is not None else "each slice's separate"
                controller.show_status(
                    f"FCFI: {objects()} object(s) from {tally['proposals']} proposal(s) on {len(keys)} "
                    f"slices ({how}){sizes_note(sizes, self._commit_labels())}{left_out_note()}{ACTIONS}"
                )

        def on_error(error: Exception) -> None:
            controller.show_status(f"FCFI: segment all failed: {error}")
            on_done()

        self.progress.max, self.progress.value, self.progress.visible = 1000 * len(keys), 0, True
        self.cancel_button.enabled, self.run_button.enabled = True, False
        run.worker = run_generator(work, on_item, on_done, on_error, threaded, run=run)
        return run

    def cancel(self) -> None:
        if self._run is not None:
            self._run.cancelled = True

    @property
    def running(self) -> bool:
        return self._run is not None

    # ------------------------------------------------------------------ accept, delete, correct
    def _where(self, proposal: int | None) -> Proposal | None:
        """A proposal shown on the slice on screen with every slice it lies on; None (with a message)
        when there is none."""
        state, layer, key = self.controller.state, self.proposals_layer(), self.controller.current_key()
        if state is None or layer is None or key is None or not proposal:
            self.controller.show_status("FCFI: select a proposal first (click it)")
            return None
        if not (np.asarray(self._plane(layer, key)) == proposal).any():
            self.controller.show_status(f"FCFI: proposal {proposal} is not on this slice")
            return None
        return Proposal(state, layer, int(proposal), slices_holding(layer.data, int(proposal)) or [key])

    def _busy_slices(self, found: Proposal) -> list[SliceKey]:
        """The proposal's slices with an object in progress (correcting needs the slice's object slot)."""
        return [key for key in found.keys if found.state.objects.get(key).has_object]

    def _overlapped_slices(self, found: Proposal) -> list[SliceKey]:
        """The proposal's slices where it overlaps the object in progress (accepting it would take the
        user's object's pixels first)."""
        overlapped = []
        for key in found.keys:
            obj = found.state.objects.get(key, create=False)
            if (
                obj is not None
                and obj.has_object
                and obj.mask is not None
                and (obj.mask & found.mask(key)).any()
            ):
                overlapped.append(key)
        return overlapped

    def _awaited(self, found: Proposal) -> bool:
        """The prediction of an object in progress on the proposal's slices is on its way (its mask on
        screen is not that of its clicks yet): whether they overlap cannot be told."""
        pending = self.controller.predictor.pending
        return any(pending(found.state.image_id, key) for key in found.keys)

    def _refuse_busy(self, busy: list[SliceKey], what: str = "an object in progress") -> None:
        verb = "has" if len(busy) == 1 else "have"
        where = (
            "this slice has" if busy == [self.controller.current_key()] else f"{describe_slices(busy)} {verb}"
        )
        self.controller.show_status(f"FCFI: {where} {what}; commit or reset it first")

    def _drop(self, found: Proposal, refresh: bool = True) -> None:
        for key in found.keys:
            plane = self._plane(found.layer, key)
            plane[plane == found.label] = 0
        if refresh:  # (Accept all redraws once at the end)
            found.layer.refresh()
        if self.selected == found.label:
            self.selected = None

    def delete(self, proposal: int | None = None) -> bool:
        found = self._where(proposal or self.selected)
        if found is None:
            return False
        self.history.deleted(found.layer, found.label, {key: found.mask(key) for key in found.keys})
        self._drop(found)
        where = f" (on {len(found.keys)} slices)" if len(found.keys) > 1 else ""
        self.controller.show_status(f"FCFI: proposal deleted{where}; Ctrl+Z brings it back")
        return True

    def accept(self, proposal: int | None = None) -> bool:
        found = self._where(proposal or self.selected)
        if found is None:
            return False
        if self._awaited(found):
            self.controller.show_status(AWAITED)
            return False
        overlapped = self._overlapped_slices(found)
        if overlapped:
            self._refuse_busy(overlapped, f"an object in progress overlapping proposal {found.label}")
            return False
        accepted = self._accept(found)
        if accepted is None:
            return False
        self.history.accepted(found.state.labels_layer, [accepted])
        self.controller.show_status(f"{self.controller.viewer.status}; Ctrl+Z takes it back")
        return True

    def _covered_labels(self, found: Proposal) -> list[int]:
        """The existing labels the proposal covers :data:`COVERED_LABEL_SHARE` or more of, on any slice."""
        labels = self._commit_labels()
        covered: set[int] = set()
        for key in [] if labels is None else found.keys:
            mask = found.mask(key)
            rows, cols = np.nonzero(mask)
            if rows.size == 0:
                continue
            # Only around the proposal (a multiscale layer's full plane may not fit in memory): a label
            # it covers half of lies mostly within its box grown by the box's size on each side.
            height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
            r0, c0 = max(rows.min() - height, 0), max(cols.min() - width, 0)
            r1, c1 = rows.max() + height + 1, cols.max() + width + 1
            full = helpers.image_data(labels)
            plane = np.asarray(full[tuple(key) + (slice(r0, r1), slice(c0, c1))])
            under = plane[mask[r0:r1, c0:c1]]
            ids, counts = np.unique(under[under > 0], return_counts=True)
            for label, count in zip(ids.tolist(), counts.tolist()):
                if count >= COVERED_LABEL_SHARE * int((plane == label).sum()):
                    covered.add(int(label))
        return sorted(covered)

    def _accept(self, found: Proposal, refresh: bool = True) -> tuple[Any, ...] | None:
        """Commit the proposal on all its slices, as one object; returns
        what :meth:`ProposalHistory.accepted` needs (None when the commit refused it or it covers an
        existing label: the status says why)."""
        controller, state = self.controller, found.state
        covered = self._covered_labels(found)
        if covered:
            names = ", ".join(str(label) for label in covered[:5]) + (" …" if len(covered) > 5 else "")
            controller.show_status(
                f"FCFI: proposal {found.label} covers most of label {names} (already annotated): "
                "C corrects it into the object in progress (Commit then follows the labels rules), D "
                "deletes it"
            )
            return None
        masks = {key: found.mask(key) for key in found.keys}
        token = self.history.given_back(found.layer, found.label)  # a correction undone, then accepted
        if not commit_proposal(controller, state, masks, token):  # refused (e.g. all on another label)
            return None
        self.history.accepted_as_it_is(token)
        record = helpers.click_log_of(state.labels_layer).records[-1]
        self._drop(found, refresh)
        return record, found.layer, found.label, masks

    def accept_all(self) -> int:
        """Commit every proposal (each linked one whole); returns how many objects were committed."""
        state, layer = self.controller.state, self.proposals_layer()
        if state is None or layer is None:
            self.controller.show_status("FCFI: no proposals; run Segment all first")
            return 0
        slices_of: dict[int, list[SliceKey]] = {}
        for key in itertools.product(*(range(n) for n in state.geometry.slice_shape)):
            plane = np.asarray(self._plane(layer, key))
            for proposal in np.unique(plane[plane > 0]).tolist():
                slices_of.setdefault(int(proposal), []).append(key)
        found_all = [Proposal(state, layer, proposal, keys) for proposal, keys in slices_of.items()]
        # the user's objects in progress are never painted over: proposals overlapping them stay
        awaited = [found for found in found_all if self._awaited(found)]
        rest = [found for found in found_all if not any(found is one for one in awaited)]
        free = [found for found in rest if not self._overlapped_slices(found)]
        accepted, busy = [], len(rest) - len(free)
        refusals: list[str] = []
        progress = CommitProgress(self.accept_all_button, len(free))
        # (no labels layer is made when nothing can be accepted)
        grouped = commits_as_one(self.controller, state) if free else nullcontext()
        with grouped:  # one Ctrl+Z on the labels layer takes every accepted object back
            for done, found in enumerate(free):
                progress.show(done)
                one = self._accept(found, refresh=False)
                if one is not None:
                    accepted.append(one)
                else:
                    refusals.append(str(self.controller.viewer.status).removeprefix("FCFI: "))  # the commit's
        progress.close()
        layer.refresh()
        self.history.accepted(state.labels_layer, accepted)
        kept = []
        if awaited:
            kept.append(f"{len(awaited)} on slice(s) whose object in progress is still being predicted")
        if busy:
            kept.append(f"{busy} overlapping an object in progress (commit or reset it, then accept)")
        kept += refusal_notes(refusals)
        detail = f"; kept as proposals: {'; '.join(kept)}" if kept else ""
        undo = f"; Ctrl+Z takes {'it' if len(accepted) == 1 else 'them'} back" if accepted else ""
        self.controller.show_status(f"FCFI: accepted {len(accepted)} proposal(s){detail}{undo}")
        return len(accepted)

    def correct(self, proposal: int | None = None) -> bool:
        """Make a proposal the object in progress (on all its slices): clicks refine it, Commit writes it."""
        found = self._where(proposal or self.selected)
        if found is None:
            return False
        busy = self._busy_slices(found)
        if busy:
            self._refuse_busy(busy)
            return False
        controller, state = self.controller, found.state
        masks = {key: found.mask(key) for key in found.keys}
        # undoable (a propagation or fill going on leaves these slices: the user's now); undoing it or
        # Esc gives the proposal back
        state.session.correct_proposal(masks, self.history.corrected(found.layer, found.label, masks))
        self._drop(found)
        controller.viewer.layers.selection.active = state.clicks_layer  # the next click refines it
        controller.refresh_view()
        controller.on_change()
        where = f" on {len(found.keys)} slices" if len(found.keys) > 1 else ""
        controller.show_status(
            f"FCFI: correcting proposal {found.label}{where}; click to refine, Commit writes it, Esc gives "
            "the proposal back"
        )
        return True
