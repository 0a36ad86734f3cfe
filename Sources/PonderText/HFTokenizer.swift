import PonderBase
import PonderJSON

extension Tokenizer {
    /// Loads a Hugging Face `tokenizer.json` (BPE, byte-level), with `tokenizer_config.json`
    /// beside it for the chat template and BOS/EOS when present.
    public static func load(tokenizerJSON path: String, config configPath: String? = nil) throws -> Tokenizer {
        let root = try JSONValue.parse(file: path)
        guard let model = root["model"], model["type"]?.asString == "BPE" || model["type"] == nil,
              case let .object(vocabFields)? = model["vocab"] else {
            throw PonderError(.unsupported, "\(path): model.type must be BPE with a model.vocab object")
        }
        var added: [(Int32, String, Bool)] = []
        for (i, t) in (root["added_tokens"]?.asArray ?? []).enumerated() {
            guard let id = t["id"]?.asInt, id >= 0, id < 4_000_000, let content = t["content"]?.asString else {
                throw PonderError.format("\(path): added_tokens[\(i)] needs an id in [0, 4000000) and a string content")
            }
            added.append((Int32(id), content, t["special"] == .bool(true)))
        }
        // Ids index an array sized by the largest one, so they are bounded by the number of
        // entries that define them: a vocabulary is dense, and a one-line file cannot claim id
        // 9,999,999 and cost 160 MB.
        let defined = vocabFields.count + added.count
        var maxID: Int64 = -1
        for (tok, v) in vocabFields {
            guard let id = v.asInt, id >= 0, id < defined else {
                throw PonderError.format("\(path): model.vocab[\"\(tok)\"] is not an id in [0, \(defined))")
            }
            maxID = max(maxID, id)
        }
        for (id, _, _) in added {
            guard Int(id) < defined else { throw PonderError.format("\(path): added token id \(id) is not in [0, \(defined))") }
            maxID = max(maxID, Int64(id))
        }
        guard maxID >= 0 else { throw PonderError.format("\(path): empty vocabulary") }
        // One id, one string: a second vocabulary entry with an id taken would make that id
        // detokenize to one string while the other tokenizes to it too (the round trip breaks).
        // An added token may repeat a vocabulary entry with the same id and string (HF files
        // list their special tokens in both), never give a taken id another string.
        var tokens = [String?](repeating: nil, count: Int(maxID) + 1)
        for (tok, v) in vocabFields {
            let id = Int(v.asInt ?? 0)
            if let other = tokens[id] {
                throw PonderError.format("\(path): model.vocab gives id \(id) to both \"\(other.prefix(40))\" and \"\(tok.prefix(40))\"")
            }
            tokens[id] = tok
        }
        for (i, (id, content, _)) in added.enumerated() {
            if let other = tokens[Int(id)], other != content {
                throw PonderError.format("\(path): added_tokens[\(i)] gives id \(id) the string \"\(content.prefix(40))\", which is \"\(other.prefix(40))\" elsewhere")
            }
            tokens[Int(id)] = content
        }

        var merges: [String] = []
        for (i, m) in (model["merges"]?.asArray ?? []).enumerated() {
            if let s = m.asString {
                merges.append(s)
            } else if let pair = m.asArray, pair.count == 2, let a = pair[0].asString, let b = pair[1].asString {
                merges.append(a + " " + b)
            } else {
                throw PonderError.format("\(path): model.merges[\(i)] is neither \"a b\" nor [\"a\", \"b\"]")
            }
        }
        let pre = try detectPreTokenizer(root["pre_tokenizer"], path: path)

        var template: String? = nil
        var bosText: String? = nil, eosText: String? = nil
        if let configPath, fileExists(configPath) {
            let cfg = try JSONValue.parse(file: configPath)
            template = cfg["chat_template"]?.asString
            bosText = cfg["bos_token"]?.asString ?? cfg["bos_token"]?["content"]?.asString
            eosText = cfg["eos_token"]?.asString ?? cfg["eos_token"]?["content"]?.asString
        }
        let index = Dictionary(tokens.enumerated().compactMap { i, t in t.map { ($0, Int32(i)) } }, uniquingKeysWith: { a, _ in a })
        return try Tokenizer(tokens: tokens.map { $0 ?? "" }, merges: merges, special: Set(added.filter { $0.2 }.map(\.0)), pre: pre,
                             bos: bosText.flatMap { index[$0] }, eos: eosText.flatMap { index[$0] },
                             ignoreMerges: model["ignore_merges"] == .bool(true),
                             chatTemplate: ChatTemplate(jinja: template))
    }

    static func detectPreTokenizer(_ p: JSONValue?, path: String) throws -> PreTokenizer {
        func kinds(_ v: JSONValue?) -> [JSONValue] {
            guard let v else { return [] }
            if v["type"]?.asString == "Sequence" { return (v["pretokenizers"]?.asArray ?? []).flatMap { kinds($0) } }
            return [v]
        }
        let parts = kinds(p)
        let types = parts.compactMap { $0["type"]?.asString }
        let digitsIndividual = parts.contains { $0["type"]?.asString == "Digits" && $0["individual_digits"] == .bool(true) }
        if types == ["ByteLevel"] { return .gpt2 }
        if types == ["Digits", "ByteLevel"] && digitsIndividual { return .smollm }
        if types.first == "Split", let pattern = parts[0]["pattern"]?["Regex"]?.asString {
            if pattern.contains("\\p{N}{1,3}") { return .llama3 }
            if pattern.contains("\\p{N}|") || pattern.contains("\\p{N}]?") { return .qwen2 }
        }
        throw PonderError(.unsupported, "\(path): pre_tokenizer \(p?.serialized().prefix(200) ?? "null") is not one Ponder implements (gpt2, smollm, llama3, qwen2)")
    }
}
