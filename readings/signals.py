"""What the reading domain announces, for the runtime that runs readings (worker/).

readings never imports the worker: it says what happened and the worker's receivers act
(worker/apps.py). Without a worker app installed, submitted readings simply wait.
"""

from django.dispatch import Signal

# A reading was created to be run by the worker (not by the caller itself, as the `read`
# command does). kwargs: reading. The fair queue decides when it joins the job queue.
reading_submitted = Signal()

# A reading is done or failed and its transaction committed. kwargs: reading_id, owner_id.
# The owner's next waiting reading may join the queue.
reading_ended = Signal()
