from .. import base

anonymizer = base.anonymizer
detector = base.detector
