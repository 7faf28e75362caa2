// What a chat template can call: Jinja2's filters and tests, Python's str, dict and
// list methods (as attributes), subscripts and slices, iteration, and the globals
// transformers provides (range, namespace, dict, raise_exception, strftime_now).
// Anything outside the supported set is a TemplateError, never a guess.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <memory>
#include <string_view>
#include <vector>

#include "chat/value.hpp"

namespace lorafast::chat {

// What one render may spend: bytes of any string it builds, loop iterations and
// list items in all.
struct Budget {
  std::size_t max_string_bytes;
  std::uint64_t iterations_left;
  std::uint64_t string_bytes_left;  // text built or searched: 16 x max_string_bytes
  // Every namespace() made, emptied when the render ends: attributes can make
  // cycles (ns.self = ns) or deep chains that shared pointers alone would leak or
  // free recursively.
  std::vector<std::shared_ptr<Object>> namespaces;
  // A string of `bytes` is about to be built: within the size limit, and charged.
  void string(std::size_t bytes) {
    check(bytes);
    text_work(bytes);
  }
  void check(std::size_t bytes) const {
    if (bytes > max_string_bytes) throw TemplateError("a string exceeds the template's size limit");
  }
  // Bytes of text built or searched, in all.
  void text_work(std::uint64_t bytes) {
    if (bytes > string_bytes_left) throw TemplateError("the template processes more text than its limit");
    string_bytes_left -= bytes;
  }
  void iterations(std::uint64_t n) {
    if (n > iterations_left) throw TemplateError("the template exceeds its limit of loop iterations");
    iterations_left -= n;
  }
};

bool has_filter(std::string_view name);
bool has_test(std::string_view name);
Value apply_filter(const std::string& name, const Value& value, Arguments& args, Budget& budget);
bool apply_test(const std::string& name, const Value& value, Arguments& args);

// Jinja's environment.getattr (`x.name`: a method, else the item) and getitem
// (`x[key]`: the item, else a method); missing: Undefined. Undefined.x fails.
Value get_attr(const Value& object, const std::string& name, Budget& budget);
Value get_item(const Value& object, const Value& key, Budget& budget);
Value slice(const Value& object, const Value& start, const Value& stop, const Value& step);
// The items a for loop visits (a dict's keys, a string's characters).
std::vector<Value> iterate(const Value& value, Budget& budget);
// `needle in haystack`.
bool contains(const Value& haystack, const Value& needle);

// Python's a < b for numbers, strings and lists (TemplateError for other pairs).
bool less(const Value& a, const Value& b);

// An argument by position or keyword (nullptr when absent); `check_arguments`
// rejects more positional arguments than `max_positional` and unknown keywords.
const Value* argument(const Arguments& args, std::size_t index, std::string_view name);
void check_arguments(const Arguments& args, const std::string& function, std::size_t max_positional,
                     std::initializer_list<std::string_view> names);

// The global functions; Undefined for other names.
Value global(const std::string& name, Budget& budget);

}  // namespace lorafast::chat
