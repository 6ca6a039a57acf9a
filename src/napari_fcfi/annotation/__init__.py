"""Annotation room: what turns engine sessions on 2D slices into a labels volume (no napari, no Qt).

* :mod:`.geometry`: how an image array (2D-4D, channels, scale/translate) maps onto the label grid
  and its 2D slices;
* :mod:`.painting`: the rules that write an object into a labels plane (never overwrite by default,
  edits replace only their label, refusals of commits that would leave slivers, the label-id range
  of the labels dtype);
* :mod:`.clicklog`: the record of every committed object (clicks, initial masks of edits,
  propagations) and its CSV form, which ``fcfi segment`` replays;
* :mod:`.replay`: replaying a click log into labels, used by ``fcfi segment`` and by tests that
  compare it with what the widget committed;
* :mod:`.journal`: the crash-recovery journal of a labels layer's changes;
* :mod:`.cli`: ``fcfi segment``.

The napari plugin and the command line use these modules, so a saved click log reproduces exactly
the labels the user saw.
"""
