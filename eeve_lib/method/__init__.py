"""The paper's steps, as pure functions: objects in, objects out.

Nothing here reads or writes files, loads profiles or caches: that is the pipeline's job
(:mod:`eeve_lib.pipeline`). The chapters show these functions, and the tests call them on small
inputs. One module per step:

====  ==========================================================  =============================
step  what                                                        module
====  ==========================================================  =============================
0     the English base model (tiny/small pretrain it here)        ``base_model``
1-4   what differs between tokenizer families (the seam)          ``families``
1     intermediate tokenizer on Korean text                       ``intermediate_tokenizer``
2     Korean tokens the base lacks                                ``candidates``
1-2,6 what counts as Hangul (below candidates and the families)   ``hangul``
3     the target tokenizer: new tokens as BPE merges              ``target_tokenizer``
4     token frequencies over the corpus                           ``token_frequency``
5-7   drop rare tokens, add frequent characters, repeat           ``frequency_loop``
8     biased sampling of windows with new tokens                  ``sampling``
9     new embedding rows from their subword pieces                ``embedding_init``
10    the seven stages and exact freezing                         ``stages``, ``row_split``
10    one stage's loop (the paper's), and its engine here         ``training_loop``, ``stage_loop``
10    stage 6 as LoRA/QLoRA; a stage sharded over processes       ``adapters``, ``sharding``
11    bits per character, generation cost, KoBEST                 ``evaluation``, ``kobest``
11    NSMC sentiment and Korean-English matching (local data)     ``tasks``
====  ==========================================================  =============================

``lm`` holds the language-model arithmetic that steps 0 and 8-11 share.
"""
