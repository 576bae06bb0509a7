// Sampler and log-probability helpers: edgellama._core.Sampler, Rng, log_softmax, top_logprobs.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <mutex>
#include <string>

#include "bindings.h"
#include "edgellama/errors.h"
#include "edgellama/sampler.h"
#include "edgellama/token_mask.h"

namespace {

using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;

// A 1-D float32 C-contiguous view of `obj`: float32 contiguous arrays are used as they are; other
// floating dtypes (float64, float16) and non-contiguous arrays are converted with a copy. Anything
// else raises TypeError (dtype) or ValueError (shape).
FloatArray as_logits(const py::handle& obj, const char* who) {
  py::array arr = py::array::ensure(obj);
  if (!arr) {
    PyErr_Clear();
    throw py::type_error(std::string(who) + ": logits must be a 1-D numpy float32 array, got " +
                         std::string(py::str(py::type::handle_of(obj).attr("__name__"))));
  }
  if (arr.dtype().kind() != 'f')
    throw py::type_error(std::string(who) + ": logits must be a 1-D numpy float32 array, got dtype " +
                         std::string(py::str(arr.dtype())));
  if (arr.ndim() != 1)
    throw py::value_error(std::string(who) + ": logits must be 1-D of shape (n_vocab,), got ndim=" +
                          std::to_string(arr.ndim()));
  if (arr.shape(0) == 0) throw py::value_error(std::string(who) + ": logits is empty");
  if (arr.shape(0) > std::numeric_limits<int32_t>::max())
    throw py::value_error(std::string(who) + ": logits has more than 2^31-1 entries");
  return FloatArray::ensure(arr);
}

// The allowed-token bitset argument of sample()/probabilities(): None, or a 1-D C-contiguous numpy
// array of 32-bit words (int32 as llguidance allocates it, or uint32), ceil(n_vocab/32) long. It is
// used in place (no copy); the returned object (None or the array) keeps it alive while the GIL is
// released. (Not a default py::array: that is a real, empty float64 array, not "no mask".)
py::object as_mask(const py::object& obj, int32_t n_vocab, const char* who) {
  if (obj.is_none()) return py::none();
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(std::string(who) + ": allowed must be a numpy int32/uint32 bitmask array or None, got " +
                         std::string(py::str(py::type::handle_of(obj).attr("__name__"))));
  py::array arr = py::reinterpret_borrow<py::array>(obj);
  const char kind = arr.dtype().kind();
  if ((kind != 'i' && kind != 'u') || arr.dtype().itemsize() != 4)
    throw py::type_error(std::string(who) + ": allowed must have dtype int32 or uint32, got " +
                         std::string(py::str(arr.dtype())));
  const size_t words = edgellama::token_mask_words(n_vocab);
  if (arr.ndim() != 1 || size_t(arr.shape(0)) != words)
    throw py::value_error(std::string(who) + ": allowed must be 1-D with ceil(n_vocab/32) = " + std::to_string(words) +
                          " words for n_vocab " + std::to_string(n_vocab) + ", got shape " +
                          std::string(py::str(py::tuple(py::cast(std::vector<py::ssize_t>(arr.shape(), arr.shape() + arr.ndim()))))));
  if (!(arr.flags() & py::array::c_style))
    throw py::value_error(std::string(who) + ": allowed must be C-contiguous");
  return arr;
}

const uint32_t* mask_ptr(const py::object& mask) {
  if (mask.is_none()) return nullptr;
  return static_cast<const uint32_t*>(py::reinterpret_borrow<py::array>(mask).data());
}

// The core Sampler is not thread-safe; the binding serializes calls on one object so that two
// Python threads sharing a sampler (with the GIL released in sample) cannot corrupt its scratch.
struct PySampler {
  explicit PySampler(const edgellama::SamplerParams& p) : s(p) {}
  edgellama::Sampler s;
  std::mutex mu;
};

// Shortest decimal that reads back as the same float32 (0.8f -> "0.8", not 0.800000011920929).
std::string short_float(float v) {
  char buf[32];
  for (int prec = 1; prec <= 9; ++prec) {
    std::snprintf(buf, sizeof(buf), "%.*g", prec, double(v));
    if (std::strtof(buf, nullptr) == v) break;
  }
  return buf;
}

}  // namespace

void bind_sampler(py::module_& m) {
  // The sampler's generator on its own, so tests can pin its stream down against independent
  // implementations of MT19937 and of the uniform double (tests/test_sampler_rng.py).
  py::class_<edgellama::Rng>(m, "Rng",
                             "The sampler's random numbers: std::mt19937 (seed mod 2^32) and llama.cpp's uniform "
                             "double (libstdc++'s generate_canonical arithmetic), written out so every platform "
                             "gives the same stream.")
      .def(py::init<uint64_t>(), py::arg("seed"))
      .def("next_u32", &edgellama::Rng::next_u32, "The next 32-bit output of std::mt19937.")
      .def("next_double", &edgellama::Rng::next_double,
           "The next uniform double in [0, 1) (two 32-bit outputs), as llama.cpp's dist sampler draws it.")
      .def_static("canonical", &edgellama::Rng::canonical, py::arg("low"), py::arg("high"),
                  "The uniform double next_double() makes of two 32-bit outputs (low word first).");

  py::class_<PySampler>(m, "Sampler",
                        "Seeded token sampler ([allowed-token mask] -> logit bias -> repeat/frequency/presence "
                        "penalties -> top-k -> typical -> top-p -> min-p -> temperature -> draw). temperature <= 0 "
                        "is greedy.")
      .def(py::init([](float temperature, int32_t top_k, float top_p, float min_p, float typical_p,
                       float repeat_penalty, int32_t repeat_last_n, float frequency_penalty, float presence_penalty,
                       uint64_t seed, py::object logit_bias, int32_t mirostat, float mirostat_tau,
                       float mirostat_eta, int32_t mirostat_m, int32_t n_sampleable) {
             edgellama::SamplerParams p;
             p.temperature = temperature;
             p.top_k = top_k;
             p.top_p = top_p;
             p.min_p = min_p;
             p.typical_p = typical_p;
             p.repeat_penalty = repeat_penalty;
             p.repeat_last_n = repeat_last_n;
             p.frequency_penalty = frequency_penalty;
             p.presence_penalty = presence_penalty;
             p.seed = seed;
             p.mirostat = mirostat;
             p.mirostat_tau = mirostat_tau;
             p.mirostat_eta = mirostat_eta;
             p.mirostat_m = mirostat_m;
             p.n_sampleable = n_sampleable;
             if (!logit_bias.is_none()) {
               if (!py::isinstance<py::dict>(logit_bias))
                 throw py::type_error("Sampler: logit_bias must be a dict {token_id: bias} or None, got " +
                                      std::string(py::str(py::type::handle_of(logit_bias).attr("__name__"))));
               for (auto item : logit_bias.cast<py::dict>()) {
                 int64_t id;
                 double bias;
                 try {
                   id = item.first.cast<int64_t>();
                   bias = item.second.cast<double>();
                 } catch (const py::cast_error&) {
                   throw py::type_error("Sampler: logit_bias must map int token ids to float biases, got " +
                                        std::string(py::repr(item.first)) + ": " + std::string(py::repr(item.second)));
                 }
                 if (id < 0 || id > std::numeric_limits<int32_t>::max())
                   throw edgellama::ArgumentError("Sampler: logit_bias token id " + std::to_string(id) +
                                                  " is out of range");
                 p.logit_bias.emplace_back(int32_t(id), float(bias));
               }
             }
             return new PySampler(p);
           }),
           py::kw_only(), py::arg("temperature") = 0.8f, py::arg("top_k") = 40, py::arg("top_p") = 0.95f,
           py::arg("min_p") = 0.05f, py::arg("typical_p") = 1.0f, py::arg("repeat_penalty") = 1.0f,
           py::arg("repeat_last_n") = 64, py::arg("frequency_penalty") = 0.0f, py::arg("presence_penalty") = 0.0f,
           py::arg("seed") = uint64_t(0xFFFFFFFFu), py::arg("logit_bias") = py::none(), py::arg("mirostat") = 0,
           py::arg("mirostat_tau") = 5.0f, py::arg("mirostat_eta") = 0.1f, py::arg("mirostat_m") = 100,
           py::arg("n_sampleable") = -1)
      .def(
          "sample",
          [](PySampler& self, const py::object& logits, const py::object& allowed) {
            FloatArray a = as_logits(logits, "Sampler.sample");
            const float* data = a.data();
            const int32_t n = int32_t(a.shape(0));
            py::object mask = as_mask(allowed, n, "Sampler.sample");
            const uint32_t* bits = mask_ptr(mask);
            py::gil_scoped_release release;
            std::lock_guard<std::mutex> lock(self.mu);
            return self.s.sample(data, n, bits);
          },
          py::arg("logits"), py::arg("allowed") = py::none(),
          "Draw a token id from logits (1-D float32, shape (n_vocab,); not modified). Releases the GIL. "
          "allowed: optional allowed-token bitset (int32/uint32, ceil(n_vocab/32) words, bit i%32 of word "
          "i/32 set = token i may be drawn), as llguidance fills it.")
      .def(
          "probabilities",
          [](PySampler& self, const py::object& logits, const py::object& allowed) {
            FloatArray a = as_logits(logits, "Sampler.probabilities");
            const float* data = a.data();
            const int32_t n = int32_t(a.shape(0));
            py::object mask = as_mask(allowed, n, "Sampler.probabilities");
            const uint32_t* bits = mask_ptr(mask);
            py::array_t<float> out(n);
            float* dst = out.mutable_data();
            {
              py::gil_scoped_release release;
              std::lock_guard<std::mutex> lock(self.mu);
              self.s.probabilities(data, n, dst, bits);
            }
            return out;
          },
          py::arg("logits"), py::arg("allowed") = py::none(),
          "The distribution sample() would draw from (float32, 0 for dropped tokens; one-hot when greedy). "
          "Uses no randomness. allowed: as in sample().")
      .def(
          "accept",
          [](PySampler& self, int64_t token) {
            if (token < 0 || token > std::numeric_limits<int32_t>::max())
              throw edgellama::ArgumentError("Sampler.accept: token id " + std::to_string(token) + " is out of range");
            std::lock_guard<std::mutex> lock(self.mu);
            self.s.accept(int32_t(token));
          },
          py::arg("token"), "Record a token (prompt or generated) for the repetition penalties.")
      .def(
          "reset",
          [](PySampler& self) {
            std::lock_guard<std::mutex> lock(self.mu);
            self.s.reset();
          },
          "Clear the token history and re-seed the RNG with the current seed.")
      .def_property(
          "seed", [](PySampler& self) { return self.s.seed(); },
          [](PySampler& self, uint64_t seed) {
            std::lock_guard<std::mutex> lock(self.mu);
            self.s.set_seed(seed);
          },
          "The RNG seed. Setting it re-seeds the RNG (history is kept).")
      .def_property_readonly("history", [](PySampler& self) {
        std::lock_guard<std::mutex> lock(self.mu);
        return self.s.history();
      }, "Accepted tokens inside the penalty window, oldest first.")
      .def_property_readonly("temperature", [](const PySampler& self) { return self.s.params().temperature; })
      .def_property_readonly("top_k", [](const PySampler& self) { return self.s.params().top_k; })
      .def_property_readonly("top_p", [](const PySampler& self) { return self.s.params().top_p; })
      .def_property_readonly("min_p", [](const PySampler& self) { return self.s.params().min_p; })
      .def_property_readonly("typical_p", [](const PySampler& self) { return self.s.params().typical_p; })
      .def_property_readonly("repeat_penalty", [](const PySampler& self) { return self.s.params().repeat_penalty; })
      .def_property_readonly("repeat_last_n", [](const PySampler& self) { return self.s.params().repeat_last_n; })
      .def_property_readonly("frequency_penalty",
                             [](const PySampler& self) { return self.s.params().frequency_penalty; })
      .def_property_readonly("presence_penalty", [](const PySampler& self) { return self.s.params().presence_penalty; })
      .def_property_readonly("logit_bias", [](const PySampler& self) {
        py::dict d;
        for (const auto& [id, bias] : self.s.params().logit_bias) d[py::int_(id)] = bias;
        return d;
      })
      .def_property_readonly("mirostat_mu", [](const PySampler& self) { return self.s.mirostat_mu(); })
      .def("__repr__", [](const PySampler& self) {
        const auto& p = self.s.params();
        return "Sampler(temperature=" + short_float(p.temperature) +
               ", top_k=" + std::to_string(p.top_k) + ", top_p=" + short_float(p.top_p) +
               ", min_p=" + short_float(p.min_p) +
               ", typical_p=" + short_float(p.typical_p) +
               ", repeat_penalty=" + short_float(p.repeat_penalty) +
               ", repeat_last_n=" + std::to_string(p.repeat_last_n) +
               ", frequency_penalty=" + short_float(p.frequency_penalty) +
               ", presence_penalty=" + short_float(p.presence_penalty) +
               ", seed=" + std::to_string(p.seed) + ")";
      });

  m.def(
      "log_softmax",
      [](const py::object& logits) {
        FloatArray a = as_logits(logits, "log_softmax");
        const int32_t n = int32_t(a.shape(0));
        py::array_t<float> out(n);
        const float* src = a.data();
        float* dst = out.mutable_data();
        {
          py::gil_scoped_release release;
          edgellama::log_softmax(src, n, dst);
        }
        return out;
      },
      py::arg("logits"), "log(softmax(logits)) as float32 (computed in double; NaN logits count as -inf).");

  m.def(
      "top_logprobs",
      [](const py::object& logits, int64_t k) {
        FloatArray a = as_logits(logits, "top_logprobs");
        if (k < 0) throw edgellama::ArgumentError("top_logprobs: k must be >= 0, got " + std::to_string(k));
        const int32_t n = int32_t(a.shape(0));
        const int32_t kk = int32_t(std::min<int64_t>(k, n));
        std::vector<std::pair<int32_t, float>> top;
        {
          py::gil_scoped_release release;
          top = edgellama::top_logprobs(a.data(), n, kk);
        }
        py::list ids, lps;
        for (const auto& [id, lp] : top) {
          ids.append(id);
          lps.append(double(lp));
        }
        return py::make_tuple(ids, lps);
      },
      py::arg("logits"), py::arg("k"),
      "The k most probable tokens: (ids, logprobs), sorted by logprob descending (ties -> lower id).");
}
