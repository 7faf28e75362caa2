// Python's semantics for the template values: truth, ==, str(), repr() and json.dumps.
#include "chat/value.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

#include <unicode/uchar.h>

#include "text/utf8.hpp"

namespace lorafast::chat {

const Value* Object::find(std::string_view key) const {
  for (const auto& [k, v] : entries)
    if (k == key) return &v;
  return nullptr;
}

void Object::set(const std::string& key, Value value) {
  for (auto& [k, v] : entries)
    if (k == key) {
      v = std::move(value);
      return;
    }
  entries.emplace_back(key, std::move(value));
}

namespace {
void check_depth(std::uint32_t depth) {
  if (depth > max_value_depth) throw TemplateError("values nest deeper than 256 levels");
}
}  // namespace

Value::Value(Array a) {
  std::uint32_t deepest = 0;
  for (const Value& item : a) deepest = std::max(deepest, item.depth);
  depth = deepest + 1;
  check_depth(depth);
  v = std::make_shared<Array>(std::move(a));
}

Value::Value(std::shared_ptr<Object> o) {
  std::uint32_t deepest = 0;
  for (const auto& [k, item] : o->entries) deepest = std::max(deepest, item.depth);
  depth = deepest + 1;
  check_depth(depth);
  v = std::move(o);
}

Value make_tuple(Array items) {
  Value v(std::move(items));
  v.tuple = true;
  return v;
}

Value from_json(const nlohmann::ordered_json& json) {
  switch (json.type()) {
    case nlohmann::ordered_json::value_t::null: return Value(nullptr);
    case nlohmann::ordered_json::value_t::boolean: return Value(json.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer: return Value(json.get<std::int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned: {
      const auto u = json.get<std::uint64_t>();
      if (u <= static_cast<std::uint64_t>(INT64_MAX)) return Value(static_cast<std::int64_t>(u));
      return Value(static_cast<double>(u));
    }
    case nlohmann::ordered_json::value_t::number_float: return Value(json.get<double>());
    case nlohmann::ordered_json::value_t::string: return Value(json.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      Array a;
      a.reserve(json.size());
      for (const auto& item : json) a.push_back(from_json(item));
      return Value(std::move(a));
    }
    case nlohmann::ordered_json::value_t::object: {
      auto o = std::make_shared<Object>();
      o->entries.reserve(json.size());
      for (const auto& [k, item] : json.items()) o->entries.emplace_back(k, from_json(item));
      return Value(std::move(o));
    }
    default: throw TemplateError("binary values are not template data");
  }
}

bool truthy(const Value& v) {
  switch (v.v.index()) {
    case 0:
    case 1: return false;
    case 2: return v.boolean();
    case 3: return v.integer() != 0;
    case 4: return v.number() != 0.0;
    case 5: return !v.str().empty();
    case 6: return !v.array().empty();
    case 7: return v.is_namespace() || !v.object().entries.empty();
    default: return true;
  }
}

bool equal(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.number() == b.number();
    return a.integer() == b.integer();
  }
  if (a.v.index() != b.v.index()) return false;
  switch (a.v.index()) {
    case 0:
    case 1: return true;
    case 5: return a.str() == b.str();
    case 6: {
      const Array &x = a.array(), &y = b.array();
      if (x.size() != y.size()) return false;
      for (std::size_t i = 0; i < x.size(); ++i)
        if (!equal(x[i], y[i])) return false;
      return true;
    }
    case 7: {
      const Object &x = a.object(), &y = b.object();
      if (x.is_namespace || y.is_namespace) return &x == &y;
      if (x.entries.size() != y.entries.size()) return false;
      for (const auto& [k, value] : x.entries) {
        const Value* other = y.find(k);
        if (other == nullptr || !equal(value, *other)) return false;
      }
      return true;
    }
    default: return &a.callable() == &b.callable();
  }
}

std::string type_name(const Value& v) {
  static const char* const names[] = {"undefined", "NoneType", "bool", "int", "float", "str", "list", "dict", "function"};
  return v.is_namespace() ? "Namespace" : names[v.v.index()];
}

std::string float_repr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d < 0 ? "-inf" : "inf";
  // Shortest round-trip digits, laid out as Python's repr: positional for decimal
  // exponents in [-4, 16), else d.ddde+XX.
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
  std::string sci(buf, end);
  const std::size_t e = sci.find('e');
  std::string mantissa = sci.substr(0, e);
  const int exponent = std::stoi(sci.substr(e + 1));
  std::string sign;
  if (mantissa[0] == '-') sign = "-", mantissa.erase(0, 1);
  std::string digits;
  for (char c : mantissa)
    if (c != '.') digits += c;
  if (exponent >= -4 && exponent < 16) {
    std::string out;
    if (exponent < 0) {
      out = "0." + std::string(-exponent - 1, '0') + digits;
    } else if (static_cast<int>(digits.size()) <= exponent + 1) {
      out = digits + std::string(exponent + 1 - digits.size(), '0') + ".0";
    } else {
      out = digits.substr(0, exponent + 1) + "." + digits.substr(exponent + 1);
    }
    return sign + out;
  }
  std::string out = digits.substr(0, 1);
  if (digits.size() > 1) out += "." + digits.substr(1);
  char exp[16];
  std::snprintf(exp, sizeof exp, "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
  return sign + out + exp;
}

namespace {

bool printable(char32_t c) {
  if (c == ' ') return true;
  switch (u_charType(static_cast<UChar32>(c))) {
    case U_CONTROL_CHAR:
    case U_FORMAT_CHAR:
    case U_SURROGATE:
    case U_PRIVATE_USE_CHAR:
    case U_UNASSIGNED:
    case U_LINE_SEPARATOR:
    case U_PARAGRAPH_SEPARATOR:
    case U_SPACE_SEPARATOR: return false;
    default: return true;
  }
}

std::string string_repr(const std::string& s) {
  const bool has_single = s.find('\'') != std::string::npos, has_double = s.find('"') != std::string::npos;
  const char quote = has_single && !has_double ? '"' : '\'';
  std::string out(1, quote);
  std::size_t pos = 0;
  while (pos < s.size()) {
    const std::size_t start = pos;
    const char32_t c = text::next_code_point(s, pos);
    char buf[16];
    if (c == static_cast<char32_t>(quote) || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c < 0x20 || c == 0x7f || (c >= 0x80 && !printable(c))) {
      if (c < 0x100) std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned>(c));
      else if (c < 0x10000) std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
      else std::snprintf(buf, sizeof buf, "\\U%08x", static_cast<unsigned>(c));
      out += buf;
    } else {
      out.append(s, start, pos - start);
    }
  }
  out += quote;
  return out;
}

void json_string(std::string& out, const std::string& s, bool ensure_ascii) {
  out += '"';
  std::size_t pos = 0;
  while (pos < s.size()) {
    const std::size_t start = pos;
    const char32_t c = text::next_code_point(s, pos);
    char buf[16];
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20 || (ensure_ascii && c >= 0x7f)) {
          if (c >= 0x10000) {
            const char32_t u = c - 0x10000;
            std::snprintf(buf, sizeof buf, "\\u%04x\\u%04x", static_cast<unsigned>(0xD800 + (u >> 10)),
                          static_cast<unsigned>(0xDC00 + (u & 0x3FF)));
          } else {
            std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
          }
          out += buf;
        } else {
          out.append(s, start, pos - start);
        }
    }
  }
  out += '"';
}

void json_value(std::string& out, const Value& v, const JsonStyle& style, int depth) {
  if (depth > 200) throw TemplateError("tojson: value nested too deeply");
  if (out.size() > style.max_bytes) throw TemplateError("a string exceeds the template's size limit");
  const auto newline = [&](int level) {
    if (style.indent < 0) return;
    out += '\n';
    out.append(static_cast<std::size_t>(style.indent) * level, ' ');
  };
  switch (v.v.index()) {
    case 1: out += "null"; return;
    case 2: out += v.boolean() ? "true" : "false"; return;
    case 3: out += std::to_string(v.integer()); return;
    case 4: {
      const double d = v.number();
      out += std::isnan(d) ? "NaN" : std::isinf(d) ? (d < 0 ? "-Infinity" : "Infinity") : float_repr(d);
      return;
    }
    case 5: json_string(out, v.str(), style.ensure_ascii); return;
    case 6: {
      const Array& a = v.array();
      if (a.empty()) {
        out += "[]";
        return;
      }
      out += '[';
      for (std::size_t i = 0; i < a.size(); ++i) {
        if (i > 0) out += style.item_separator;
        newline(depth + 1);
        json_value(out, a[i], style, depth + 1);
      }
      newline(depth);
      out += ']';
      return;
    }
    case 7:
      if (!v.is_namespace()) {
        std::vector<const std::pair<std::string, Value>*> entries;
        for (const auto& e : v.object().entries) entries.push_back(&e);
        if (entries.empty()) {
          out += "{}";
          return;
        }
        if (style.sort_keys)
          std::stable_sort(entries.begin(), entries.end(), [](auto* a, auto* b) { return a->first < b->first; });
        out += '{';
        for (std::size_t i = 0; i < entries.size(); ++i) {
          if (i > 0) out += style.item_separator;
          newline(depth + 1);
          json_string(out, entries[i]->first, style.ensure_ascii);
          out += style.key_separator;
          json_value(out, entries[i]->second, style, depth + 1);
        }
        newline(depth);
        out += '}';
        return;
      }
      [[fallthrough]];
    default: throw TemplateError("tojson: Object of type " + type_name(v) + " is not JSON serializable");
  }
}

}  // namespace

std::string repr(const Value& v) {
  switch (v.v.index()) {
    case 0: return "Undefined";
    case 5: return string_repr(v.str());
    case 6: {
      std::string out = v.tuple ? "(" : "[";
      const Array& a = v.array();
      for (std::size_t i = 0; i < a.size(); ++i) out += (i ? ", " : "") + repr(a[i]);
      if (v.tuple && a.size() == 1) out += ",";
      return out + (v.tuple ? ")" : "]");
    }
    case 7: {
      if (v.is_namespace()) return "<Namespace>";
      std::string out = "{";
      bool first = true;
      for (const auto& [k, item] : v.object().entries) {
        out += (first ? "" : ", ") + string_repr(k) + ": " + repr(item);
        first = false;
      }
      return out + "}";
    }
    default: return to_str(v);
  }
}

std::string to_str(const Value& v) {
  switch (v.v.index()) {
    case 0: return "";
    case 1: return "None";
    case 2: return v.boolean() ? "True" : "False";
    case 3: return std::to_string(v.integer());
    case 4: return float_repr(v.number());
    case 5: return v.str();
    case 8: return "<macro " + v.callable().name + ">";
    default: return repr(v);
  }
}

std::string to_json(const Value& v, const JsonStyle& style) {
  std::string out;
  json_value(out, v, style, 0);
  return out;
}

}  // namespace lorafast::chat
