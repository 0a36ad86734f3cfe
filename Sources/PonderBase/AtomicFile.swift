#if canImport(Glibc)
import Glibc
#endif

/// A file written under a temporary name, flushed to disk, then renamed over its final name:
/// a crash at any point leaves either the old file or the complete new one, never a torn one.
public final class AtomicFile {
    public let path: String
    let tmp: String
    var fd: Int32
    var written = 0

    public init(path: String) throws {
        try checkPath(path)
        self.path = path
        tmp = path + ".tmp-\(getpid())"
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw PonderError(.io, "\(tmp): cannot create: \(String(cString: strerror(errno)))") }
    }

    deinit {
        if fd >= 0 {
            close(fd)
            unlink(tmp)
        }
    }

    public var offset: Int { written }

    public func write(_ p: UnsafeRawPointer, count: Int) throws {
        var done = 0
        while done < count {
            let n = Glibc.write(fd, p + done, count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw PonderError(.io, "\(path): write failed: \(String(cString: strerror(errno)))")
            }
            done += n
        }
        written += count
    }

    public func write(_ bytes: [UInt8]) throws { try bytes.withUnsafeBytes { try write($0.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!, count: $0.count) } }
    public func write(_ s: String) throws { try write(Array(s.utf8)) }

    /// fsync, rename into place, fsync the directory.
    public func commit() throws {
        guard fsync(fd) == 0 else { throw PonderError(.io, "\(path): fsync failed: \(String(cString: strerror(errno)))") }
        close(fd)
        fd = -1
        guard rename(tmp, path) == 0 else {
            unlink(tmp)
            throw PonderError(.io, "\(path): rename failed: \(String(cString: strerror(errno)))")
        }
        syncDirectory(of: path)
    }

    /// Writes a whole small file atomically.
    public static func write(_ path: String, _ text: String) throws {
        let f = try AtomicFile(path: path)
        try f.write(text)
        try f.commit()
    }
}

public func syncDirectory(of path: String) {
    let dir = path.lastIndex(of: "/").map { String(path[..<$0]) } ?? "."
    let dfd = open(dir.isEmpty ? "/" : dir, O_RDONLY)
    if dfd >= 0 {
        fsync(dfd)
        close(dfd)
    }
}

/// mkdir -p
public func makeDirectories(_ path: String) throws {
    try checkPath(path)
    var cur = path.hasPrefix("/") ? "" : "."
    for part in path.split(separator: "/") {
        cur += "/" + part
        if mkdir(cur, 0o755) != 0 && errno != EEXIST {
            throw PonderError(.io, "\(cur): cannot create directory: \(String(cString: strerror(errno)))")
        }
    }
}

/// rm -r (for pruning old checkpoints).
public func removeTree(_ path: String) {
    if let d = opendir(path) {
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
            if name == "." || name == ".." { continue }
            let child = path + "/" + name
            if isDirectory(child) { removeTree(child) } else { unlink(child) }
        }
        closedir(d)
    }
    rmdir(path)
    unlink(path)
}

/// Names in a directory (empty if it cannot be read).
public func listDirectory(_ path: String) -> [String] {
    guard let d = opendir(path) else { return [] }
    defer { closedir(d) }
    var out: [String] = []
    while let e = readdir(d) {
        let name = withUnsafeBytes(of: e.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
        if name != "." && name != ".." { out.append(name) }
    }
    return out.sorted()
}
