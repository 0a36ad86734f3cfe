/// Ponder's version; ponder.h's PONDER_VERSION_* macros must match (a test checks).
public let ponderVersionMajor = 0
public let ponderVersionMinor = 1
public let ponderVersionPatch = 0
public let ponderVersion = "\(ponderVersionMajor).\(ponderVersionMinor).\(ponderVersionPatch)"
