from dp2.config import LazyCall as L

detector = L(dict)(score_threshold=0.3, scales=[1, 2])
anonymizer = L(dict)(detector="${detector}", name="base")
