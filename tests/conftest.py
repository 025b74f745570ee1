import os

from hypothesis import settings

# CI must not flip on a new random example: the default profile replays the same examples every run;
# HYPOTHESIS_PROFILE=explore searches afresh.
settings.register_profile("default", derandomize=True, deadline=None)
settings.register_profile("explore", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
