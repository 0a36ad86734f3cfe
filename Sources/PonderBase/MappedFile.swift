#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A read-only memory map of a whole file. Model files are hundreds of MB: mapping lets the
/// loader read tensors in place without a copy and lets the OS drop pages after dequantization.
public final class MappedFile: @unchecked Sendable {
    public let path: String
    public let bytes: UnsafeRawBufferPointer

    public init(path: String) throws {
        try checkPath(path)
        self.path = path
        // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever.
        // Only regular files are mapped; the flag has no effect on them.
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { throw PonderError(.io, "\(path): cannot open: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw PonderError(.io, "\(path): cannot stat") }
        if (st.st_mode & S_IFMT) == S_IFDIR { throw PonderError(.io, "\(path): is a directory") }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw PonderError(.io, "\(path): not a regular file (a FIFO, device, socket or directory cannot be read as one)")
        }
        let size = Int(st.st_size)
        if size == 0 {
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            return
        }
        guard let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
            throw PonderError(.io, "\(path): cannot map \(size) bytes")
        }
        bytes = UnsafeRawBufferPointer(start: p, count: size)
    }

    /// Drops the pages wholly inside [offset, offset + count) from memory: a loader that has
    /// copied a tensor out of the file calls this, so loading does not hold the file and its
    /// copy at once. The pages read back from the file if touched again (a private, unwritten
    /// mapping), so this changes memory, never contents.
    public func release(offset: Int, count: Int) {
        guard let base = bytes.baseAddress, offset >= 0, count > 0, offset + count <= bytes.count else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let lo = (offset + page - 1) / page * page, hi = (offset + count) / page * page
        if hi > lo { _ = madvise(UnsafeMutableRawPointer(mutating: base + lo), hi - lo, MADV_DONTNEED) }
    }

    deinit {
        if let base = bytes.baseAddress { munmap(UnsafeMutableRawPointer(mutating: base), bytes.count) }
    }
}

public func fileExists(_ path: String) -> Bool { access(path, F_OK) == 0 }

public func isDirectory(_ path: String) -> Bool {
    var st = stat()
    return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
}

/// Reads a whole (small) file, e.g. config.json or tokenizer.json.
public func readFile(_ path: String) throws -> [UInt8] {
    let f = try MappedFile(path: path)
    return Array(f.bytes)
}

/// Monotonic clock in seconds, for timings reported to callers.
public func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

/// Seconds left for `total` units of work when `done` of them took since `start` (monotonic):
/// the one ETA of every progress report. 0 before the first unit is done.
public func etaSeconds(since start: Double, done: Int, total: Int) -> Double {
    done > 0 ? (monotonicSeconds() - start) / Double(done) * Double(max(0, total - done)) : 0
}

/// A path bound for the file system: one with a NUL byte would name the file before the NUL (a
/// C string ends there), so it is refused, with the NUL shown, wherever a path is opened,
/// created or listed.
public func checkPath(_ path: String) throws {
    guard path.utf8.contains(0) else { return }
    let shown = path.replacingNULs()
    throw PonderError(.invalidArgument, "path \"\(shown)\" contains a NUL byte (U+0000): no file can be named so")
}

extension String {
    /// The string with each NUL written as \u0000, for messages.
    public func replacingNULs() -> String {
        var out = ""
        for c in unicodeScalars { if c == "\0" { out += "\\u0000" } else { out.unicodeScalars.append(c) } }
        return out
    }
}

/// What a path must be before a run relies on it.
public enum PathKind {
    /// A regular, readable file (data, a GGUF model).
    case file
    /// A regular file, or a model folder (a directory with config.json).
    case model
}

/// Why `path` cannot serve as `kind` (nil: it can): missing, a directory, a FIFO or device (which
/// would block or never end), unreadable. Validation reports it at the key that names the path,
/// before anything runs.
public func unusablePath(_ path: String, as kind: PathKind) -> String? {
    if path.utf8.contains(0) { return "contains a NUL byte (U+0000): no file can be named so" }
    var st = stat()
    guard stat(path, &st) == 0 else { return "no such file or directory: \(path)" }
    switch st.st_mode & S_IFMT {
    case S_IFREG:
        break
    case S_IFDIR:
        guard kind == .model else { return "\(path) is a directory, not a file" }
        guard access(path + "/config.json", R_OK) == 0 else { return "\(path) is a directory without config.json: not a model folder" }
        return nil
    default:
        return "\(path) is not a regular file (a FIFO, device or socket would block or never end)"
    }
    return access(path, R_OK) == 0 ? nil : "\(path) is not readable"
}
