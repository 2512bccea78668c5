"""Label values with one meaning across data, losses and methods (defined here once).

UNLABELED   -1  a person box without a known identity (data records; OIM's unlabelled persons)
BACKGROUND  -2  a sampled RoI assigned to no person (quaduplet and OIM losses, the RoI labels of
                CGPS, SSL and SeqNet)
"""

UNLABELED = -1
BACKGROUND = -2
