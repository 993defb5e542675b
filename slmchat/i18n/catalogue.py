"""Every user-visible message of the converted screens: id -> {"en": ..., "ja": ...}.

Ids are ``area.name``; ``key.<binding id>`` is a key binding's description in the
footer and the keys panel. Both languages carry the same ``{placeholders}``
(tests/test_i18n.py checks it). Key names (Ctrl+J, Esc, F8), commands (/attach) and
units (tok/s) stay as they are in Japanese. Japanese follows the register of VS Code's
Japanese UI: short, polite where it is a sentence (〜します / 〜してください), plain nouns
for labels.
"""

from __future__ import annotations

CATALOGUE: dict[str, dict[str, str]] = {
    # --- Textual's own words (wired in app.py; see the note in slmchat/i18n) ---
    "palette.placeholder": {"en": "Search for commands…", "ja": "コマンドを検索…"},
    "key.textual.palette": {"en": "palette", "ja": "パレット"},
    "key.textual.palette.tooltip": {"en": "Open the command palette",
                                    "ja": "コマンドパレットを開きます"},
    "textual.cmd.Theme": {"en": "Theme", "ja": "テーマ"},
    "textual.cmd.Theme.help": {"en": "Change the current theme", "ja": "テーマを変更します"},
    "textual.cmd.Quit": {"en": "Quit", "ja": "終了"},
    "textual.cmd.Quit.help": {"en": "Quit the application as soon as possible",
                              "ja": "アプリを終了します"},
    "textual.cmd.Keys": {"en": "Keys", "ja": "キー"},
    "textual.cmd.Keys.help": {"en": "Show or hide the keys and widget help panel",
                              "ja": "キーとヘルプのパネルを表示/非表示にします"},
    "textual.cmd.Maximize": {"en": "Maximize", "ja": "最大化"},
    "textual.cmd.Maximize.help": {"en": "Maximize the focused widget",
                                  "ja": "フォーカスのある部分を最大化します"},
    "textual.cmd.Minimize": {"en": "Minimize", "ja": "元のサイズに戻す"},
    "textual.cmd.Minimize.help": {"en": "Minimize the widget and restore to normal size",
                                  "ja": "最大化を解除して元のサイズに戻します"},
    "textual.cmd.Screenshot": {"en": "Screenshot", "ja": "スクリーンショット"},
    "textual.cmd.Screenshot.help": {"en": "Save an SVG 'screenshot' of the current screen",
                                    "ja": "現在の画面を SVG で保存します"},
    "textual.cmd.Bell": {"en": "Bell", "ja": "ベル"},
    "textual.cmd.Bell.help": {"en": "Ring the bell", "ja": "ベルを鳴らします"},

    # --- sidebar (widgets/sidebar.py) ---
    "sidebar.title": {"en": "Conversations", "ja": "会話"},
    "sidebar.search": {"en": "Search conversations", "ja": "会話を検索"},
    "sidebar.found": {"en": "{n} found", "ja": "{n} 件"},
    # time.strftime formats: today, this year, older
    "sidebar.when.today": {"en": "today %H:%M", "ja": "今日 %H:%M"},
    "sidebar.when.year": {"en": "%b %d %H:%M", "ja": "%m/%d %H:%M"},
    "sidebar.when.older": {"en": "%b %d %Y", "ja": "%Y/%m/%d"},
    "key.sidebar.results": {"en": "Results", "ja": "結果"},
    "key.sidebar.rename": {"en": "Rename", "ja": "名前を変更"},
    "key.sidebar.delete": {"en": "Delete", "ja": "削除"},
    "key.sidebar.export": {"en": "Export", "ja": "エクスポート"},

    # --- chat log (widgets/chat_log.py) ---
    "log.empty": {
        "en": "Ask anything. Enter sends, Ctrl+J adds a line, Up/Down recalls earlier prompts.\n"
              "Esc stops a reply, Ctrl+R writes it again, Ctrl+G continues it.\n"
              "Ctrl+L selects messages: c copies one, e edits and resends it.\n"
              "Ctrl+P lists every command.",
        "ja": "何でも聞いてください。Enter で送信、Ctrl+J で改行、↑/↓ で以前のプロンプトを呼び出します。\n"
              "Esc で応答を停止、Ctrl+R で書き直し、Ctrl+G で続きを生成します。\n"
              "Ctrl+L でメッセージを選択: c でコピー、e で編集して再送信します。\n"
              "Ctrl+P ですべてのコマンドを表示します。",
    },
    "key.log.previous": {"en": "Prev message", "ja": "前のメッセージ"},
    "key.log.next": {"en": "Next message", "ja": "次のメッセージ"},
    "key.log.first": {"en": "First", "ja": "最初"},
    "key.log.last": {"en": "Last", "ja": "最後"},
    "key.log.copy": {"en": "Copy", "ja": "コピー"},
    "key.log.edit": {"en": "Edit & resend", "ja": "編集して再送信"},
    "key.log.inspect": {"en": "Inspect prompt", "ja": "プロンプトを確認"},
    "key.log.branch_prev": {"en": "‹ Branch", "ja": "‹ ブランチ"},
    "key.log.branch_next": {"en": "Branch ›", "ja": "ブランチ ›"},

    # --- one message (widgets/message_view.py) ---
    "role.user": {"en": "You", "ja": "あなた"},
    "role.assistant": {"en": "Assistant", "ja": "アシスタント"},
    "role.system": {"en": "System", "ja": "システム"},
    "status.length": {"en": "hit the token limit — Ctrl+G continues",
                      "ja": "トークン上限に達しました — Ctrl+G で続きを生成"},
    "status.stopped": {"en": "stopped", "ja": "停止"},
    "status.interrupted": {"en": "interrupted (app closed mid-reply)",
                           "ja": "中断 (応答中にアプリが終了しました)"},
    "status.error": {"en": "error", "ja": "エラー"},
    "status.waiting": {"en": "waiting for the model to load…",
                       "ja": "モデルの読み込みを待っています…"},
    "stats.tokens": {"en": "{n} tok", "ja": "{n} tok"},
    "stats.tps": {"en": "{tps:.1f} tok/s", "ja": "{tps:.1f} tok/s"},
    "stats.ttft": {"en": "TTFT {s:.2f}s", "ja": "TTFT {s:.2f}秒"},
    "stats.seed": {"en": "seed {seed}", "ja": "シード {seed}"},
    "stats.greedy": {"en": "greedy", "ja": "グリーディ"},
    "curation.mark.good": {"en": "marked good", "ja": "評価: 良い"},
    "curation.mark.bad": {"en": "marked bad", "ja": "評価: 悪い"},
    "curation.edited": {"en": "edited", "ja": "編集済み"},

    # --- prompt box, attachments, sources ---
    "prompt.placeholder": {"en": "Type a message…  (Enter sends, Ctrl+J new line)",
                           "ja": "メッセージを入力…  (Enter で送信、Ctrl+J で改行)"},
    "files.label": {"en": "Files: ", "ja": "ファイル: "},
    "files.detach_hint": {"en": "  (/detach removes them)", "ja": "  (/detach で解除)"},
    "files.commands": {"en": "/attach PATH (file or folder), /detach [PATH]",
                       "ja": "/attach パス (ファイルまたはフォルダー)、/detach [パス]"},
    "files.usage": {"en": "Usage: {commands}", "ja": "使い方: {commands}"},
    "files.detached": {"en": "Files detached from this chat.",
                       "ja": "このチャットからファイルを外しました。"},
    "files.indexing": {"en": "indexing…", "ja": "索引を作成中…"},
    "files.indexing_progress": {"en": "indexing {done}/{total} files ({pct:.0f}%)",
                                "ja": "索引を作成中 {done}/{total} ファイル ({pct:.0f}%)"},
    "files.index_failed": {"en": "indexing failed", "ja": "索引の作成に失敗"},
    "files.index_failed_title": {"en": "Indexing failed", "ja": "索引の作成に失敗しました"},
    "files.indexed": {"en": "{chunks} passages, {skipped} skipped",
                      "ja": "抜粋 {chunks} 件、スキップ {skipped} 件"},
    "files.skipped_more": {"en": "\n… and {n} more", "ja": "\n… ほか {n} 件"},
    "files.skipped_title": {"en": "Skipped {n} file(s)", "ja": "{n} 件のファイルをスキップしました"},
    "files.not_used_title": {"en": "Files not used", "ja": "ファイルは使われませんでした"},
    "citations.label": {"en": "Sources:", "ja": "出典:"},
    "citations.page": {"en": " p.{page}", "ja": " {page}ページ"},
    "passage.missing": {"en": "(the passage is no longer in the index)",
                        "ja": "(この抜粋はもう索引にありません)"},
    "passage.cannot_open": {"en": "cannot open {path}: {error}", "ja": "{path} を開けません: {error}"},
    "passage.page": {"en": " (page {page})", "ja": " ({page} ページ)"},
    "passage.hint": {"en": "Esc closes", "ja": "Esc で閉じます"},
    "key.passage.close": {"en": "Close", "ja": "閉じる"},

    # --- conversations, branches, dialogs (screens/) ---
    "busy.wait": {"en": "Wait for the reply to finish, or press Esc to stop it.",
                  "ja": "応答が終わるまで待つか、Esc で停止してください。"},
    "conv.none_yet": {"en": "No conversation yet: send a message first.",
                      "ja": "まだ会話がありません。先にメッセージを送信してください。"},
    "conv.rename": {"en": "Rename conversation", "ja": "会話の名前を変更"},
    "conv.delete_confirm": {"en": "Delete “{title}” for good?",
                            "ja": "「{title}」を完全に削除しますか?"},
    "conv.deleted": {"en": "Deleted “{title}”.", "ja": "「{title}」を削除しました。"},
    "conv.export_to": {"en": "Export conversation to", "ja": "会話のエクスポート先"},
    "conv.export_hint": {"en": "Ends in .json: JSON with provenance; anything else: Markdown.",
                         "ja": "末尾が .json なら来歴付きの JSON、それ以外は Markdown で保存します。"},
    "conv.export_failed": {"en": "Export failed: {error}", "ja": "エクスポートに失敗しました: {error}"},
    "conv.exported": {"en": "Exported to {path}", "ja": "{path} にエクスポートしました"},
    "conv.export_title": {"en": "Export", "ja": "エクスポート"},
    "branches.none": {
        "en": "No other branches here: editing an earlier message or regenerating a reply "
              "makes one.",
        "ja": "ここには他のブランチがありません。前のメッセージを編集するか、応答を再生成すると"
              "ブランチができます。",
    },
    "key.chat.branch_prev": {"en": "‹ Branch", "ja": "‹ ブランチ"},
    "key.chat.branch_next": {"en": "Branch ›", "ja": "ブランチ ›"},
    "dialog.ok": {"en": "OK", "ja": "OK"},
    "dialog.cancel": {"en": "Cancel", "ja": "キャンセル"},
    "dialog.delete": {"en": "Delete", "ja": "削除"},
    "key.dialog.cancel": {"en": "Cancel", "ja": "キャンセル"},
    "key.confirm.no": {"en": "Cancel", "ja": "キャンセル"},
    "key.confirm.yes": {"en": "Yes", "ja": "はい"},

    # --- $EDITOR (screens/editor.py) ---
    "editor.not_found": {"en": "Editor {editor} not found: set $EDITOR.",
                         "ja": "エディター {editor} が見つかりません。$EDITOR を設定してください。"},
    "editor.cannot_open": {"en": "Cannot open an editor here: {error}",
                           "ja": "ここではエディターを開けません: {error}"},
    "editor.failed": {"en": "The editor exited with status {code}; the prompt is unchanged.",
                      "ja": "エディターが終了コード {code} で終了しました。プロンプトは変更していません。"},

    # --- curating replies (screens/edit_reply.py, chat_files.py) ---
    "edit_reply.title": {"en": "Edit the reply", "ja": "応答を編集"},
    "edit_reply.hint": {
        "en": "Ctrl+S saves it as the preferred answer (the model's text is kept in the "
              "reply's provenance); Esc cancels.",
        "ja": "Ctrl+S で望ましい回答として保存します (モデルの文章は応答の来歴に残ります)。"
              "Esc でキャンセルします。",
    },
    "edit_reply.save": {"en": "Save", "ja": "保存"},
    "key.edit_reply.save": {"en": "Save", "ja": "保存"},
    "key.edit_reply.cancel": {"en": "Cancel", "ja": "キャンセル"},
    "curation.no_reply": {"en": "No reply to mark yet.", "ja": "評価できる応答がまだありません。"},
    "curation.rated.good": {"en": "Reply marked good.", "ja": "応答を「良い」と評価しました。"},
    "curation.rated.bad": {"en": "Reply marked bad.", "ja": "応答を「悪い」と評価しました。"},
    "curation.cleared": {"en": "Mark cleared.", "ja": "評価を取り消しました。"},
    "curation.saved": {"en": "Saved as the preferred answer (marked good).",
                       "ja": "望ましい回答として保存しました (「良い」と評価)。"},
    "train.export_title": {"en": "Export for training", "ja": "学習用にエクスポート"},
    "train.exported": {"en": "{rows} conversation(s), {replies} repl(ies) to learn: {path}",
                       "ja": "会話 {rows} 件、学習する応答 {replies} 件: {path}"},
    "train.exported_title": {"en": "Exported for training", "ja": "学習用にエクスポートしました"},

    # --- prompt inspector (screens/prompt_inspector.py) ---
    "insp.title": {"en": "Prompt inspector — {target}", "ja": "プロンプトの確認 — {target}"},
    "insp.target.next": {"en": "next reply", "ja": "次の応答"},
    "insp.target.past": {"en": "this reply", "ja": "この応答"},
    "insp.target.reply_to": {"en": "the reply to this message", "ja": "このメッセージへの応答"},
    "insp.building": {"en": "Building the prompt…", "ja": "プロンプトを組み立てています…"},
    "insp.failed": {"en": "Cannot build the prompt: {error}",
                    "ja": "プロンプトを組み立てられません: {error}"},
    "insp.text_title": {"en": "Text fed to the model", "ja": "モデルに渡すテキスト"},
    "insp.text_title_marked": {
        "en": "Text fed to the model (special tokens marked, ↵ = line end)",
        "ja": "モデルに渡すテキスト (特殊トークンを強調、↵ = 行末)"},
    "insp.tokens_title": {"en": "Tokens fed to the model ({n})",
                          "ja": "モデルに渡すトークン ({n})"},
    "insp.col.role": {"en": "role", "ja": "ロール"},
    "insp.col.tokens": {"en": "tokens", "ja": "トークン"},
    "insp.col.text": {"en": "text", "ja": "テキスト"},
    "insp.row.dropped": {"en": "dropped", "ja": "除外"},
    "insp.row.kept": {"en": "kept", "ja": "使用"},
    "insp.row.cut": {"en": "cut", "ja": "切り詰め"},
    "insp.row.reply_starts": {"en": "(reply starts)", "ja": "(応答の開始)"},
    "insp.format.template": {"en": "the model's chat template",
                             "ja": "モデルのチャットテンプレート"},
    "insp.format.transcript": {"en": "a plain transcript (the model has no chat template)",
                               "ja": "プレーンな会話記録 (モデルにチャットテンプレートがありません)"},
    "insp.format.raw": {"en": "raw text (no template)", "ja": "生のテキスト (テンプレートなし)"},
    "insp.label.model": {"en": "Model  ", "ja": "モデル  "},
    "insp.label.format": {"en": "Format  ", "ja": "形式  "},
    "insp.label.prompt": {"en": "Prompt  ", "ja": "プロンプト  "},
    "insp.label.kv": {"en": "KV cache  ", "ja": "KV キャッシュ  "},
    "insp.label.dropped": {"en": "Dropped  ", "ja": "除外  "},
    "insp.label.stops": {"en": "Stops at  ", "ja": "停止条件  "},
    "insp.label.sampling": {"en": "Sampling  ", "ja": "サンプリング  "},
    "insp.label.written": {"en": "When written  ", "ja": "生成時  "},
    "insp.no_model": {"en": "(none loaded)", "ja": "(読み込まれていません)"},
    "insp.prompt_size": {
        "en": "{tokens} tokens of a {budget}-token budget (context {context} − up to "
              "{new} new tokens)",
        "ja": "{tokens} トークン / 予算 {budget} トークン (コンテキスト {context} − 新規最大 "
              "{new} トークン)"},
    "insp.kv_reused": {
        "en": "{cached} of {tokens} prompt tokens reused from the previous turn; "
              "{prefill} to prefill",
        "ja": "プロンプト {tokens} トークンのうち {cached} を前のターンから再利用、"
              "プリフィル {prefill}"},
    "insp.kv_later": {"en": "(the cache now holds a later turn; see 'When written')",
                      "ja": "(キャッシュには後のターンが入っています。「生成時」を参照)"},
    "insp.dropped_messages": {"en": "{n} oldest message(s) dropped to fit",
                              "ja": "収めるために古いメッセージ {n} 件を除外"},
    "insp.truncated": {"en": "the newest message was cut from the left to fit",
                       "ja": "収めるために最新のメッセージの先頭を切り詰め"},
    "insp.fits": {"en": "nothing: the whole conversation fits",
                  "ja": "なし: 会話全体が収まります"},
    "insp.eos": {"en": "the model's end-of-sequence token", "ja": "モデルの終了トークン"},
    "insp.eos_ignored": {"en": " (ignored)", "ja": " (無視)"},
    "insp.written": {
        "en": "{prompt} prompt tokens, {cached} reused from the KV cache, {new} new tokens, "
              "by {model}",
        "ja": "プロンプト {prompt} トークン、KV キャッシュから再利用 {cached}、新規 {new} "
              "トークン、モデル {model}"},
    "insp.other_model": {
        "en": "Rebuilt with the model loaded now, which is not the one that wrote this "
              "reply: its template may differ.",
        "ja": "現在のモデルで組み立て直しました。この応答を書いたモデルとは異なるため、"
              "テンプレートが違う可能性があります。"},
    "insp.note.typed": {"en": "Includes the message typed in the prompt box (not sent yet).",
                        "ja": "入力欄のメッセージ (未送信) を含みます。"},
    "insp.note.no_user_last": {
        "en": "The conversation does not end with your message: this is the prompt a "
              "regenerated or continued reply would start from.",
        "ja": "会話があなたのメッセージで終わっていません。再生成または続きの生成で使われる"
              "プロンプトです。"},
    "insp.note.rebuilt": {"en": "Rebuilt from the messages before this reply.",
                          "ja": "この応答より前のメッセージから組み立て直しました。"},
    "insp.note.continued": {"en": "This reply was continued; this is the prompt of its first part.",
                            "ja": "この応答は続きが生成されています。これは最初の部分のプロンプトです。"},
    "insp.note.current": {"en": "With this chat's current settings.",
                          "ja": "このチャットの現在の設定を使っています。"},
    "insp.copied": {"en": "Copied the prompt ({n} characters).",
                    "ja": "プロンプトをコピーしました ({n} 文字)。"},
    "insp.no_model_loaded": {"en": "No model is loaded yet: the prompt depends on its template.",
                             "ja": "モデルがまだ読み込まれていません。プロンプトはモデルの"
                                   "テンプレートで決まります。"},
    "insp.invalid_settings": {"en": "Invalid chat settings", "ja": "チャット設定が正しくありません"},
    "insp.nothing": {"en": "Nothing to inspect yet: type a message first.",
                     "ja": "確認するものがまだありません。先にメッセージを入力してください。"},
    "insp.no_messages": {"en": "This reply had no messages before it.",
                         "ja": "この応答の前にメッセージがありません。"},
    "key.inspector.close": {"en": "Close", "ja": "閉じる"},
    "key.inspector.tokens": {"en": "Text / tokens", "ja": "テキスト/トークン"},
    "key.inspector.copy": {"en": "Copy text", "ja": "テキストをコピー"},
    "key.chat.inspect_prompt": {"en": "Inspect prompt", "ja": "プロンプトを確認"},

    # --- the chat screen's other keys (screens/chat.py, compare.py: ChatScreen gets them
    # through ConversationScreen.__init__) and the app's and compare view's keys (the
    # lead adds localize_bindings(self) to SlmChatApp / CompareScreen.__init__) ---
    "key.chat.stop": {"en": "Stop", "ja": "停止"},
    "key.chat.new": {"en": "New", "ja": "新規"},
    "key.chat.regenerate": {"en": "Regenerate", "ja": "再生成"},
    "key.chat.continue": {"en": "Continue", "ja": "続きを生成"},
    "key.chat.messages": {"en": "Messages", "ja": "メッセージ"},
    "key.chat.settings": {"en": "Settings", "ja": "設定"},
    "key.chat.sidebar": {"en": "Sidebar", "ja": "サイドバー"},
    "key.chat.search": {"en": "Search", "ja": "検索"},
    "key.chat.copy_last": {"en": "Copy reply", "ja": "応答をコピー"},
    "key.chat.edit_last": {"en": "Edit last", "ja": "直前を編集"},
    "key.chat.rename": {"en": "Rename", "ja": "名前を変更"},
    "key.chat.export": {"en": "Export", "ja": "エクスポート"},
    "key.chat.mark_good": {"en": "Good reply", "ja": "良い応答"},
    "key.chat.mark_bad": {"en": "Bad reply", "ja": "悪い応答"},
    "key.chat.edit_reply": {"en": "Edit reply", "ja": "応答を編集"},
    "key.chat.compare": {"en": "Compare", "ja": "比較"},
    "key.app.models": {"en": "Models", "ja": "モデル"},
    "key.app.finetune": {"en": "Fine-tune", "ja": "ファインチューニング"},
    "key.compare.stop": {"en": "Stop / close", "ja": "停止/閉じる"},
    "key.compare.keep_left": {"en": "Keep left", "ja": "左を採用"},
    "key.compare.keep_right": {"en": "Keep right", "ja": "右を採用"},

    # --- quantize / export jobs (screens/model_tasks.py) ---
    "task.quantize_failed": {"en": "Quantize failed: {error}", "ja": "量子化に失敗しました: {error}"},
    "task.quantized": {"en": "Saved to {path}: {before} → {after} in {s:.1f}s",
                       "ja": "{path} に保存しました: {before} → {after} ({s:.1f}秒)"},
    "task.export_failed": {"en": "Export failed: {error}", "ja": "エクスポートに失敗しました: {error}"},
    "task.exported": {"en": "Exported to {path}", "ja": "{path} にエクスポートしました"},
    "task.exported_gguf": {"en": " + {gguf} ({check})", "ja": " + {gguf} ({check})"},
    "task.unverified": {"en": "unverified", "ja": "未検証"},
    # --- the compare view (screens/compare.py) ---
    "compare.title": {"en": "Compare", "ja": "比較"},
    "compare.keep_hint": {
        "en": "Keep left (Alt+Left) or keep right (Alt+Right) to continue from one reply "
              "(Esc keeps the left one).",
        "ja": "左を採用 (Alt+Left) か右を採用 (Alt+Right) で、その返答から会話を続けます"
              "(Esc は左を採用します)。"},
    "compare.no_system": {"en": "no system prompt", "ja": "システムプロンプトなし"},
    "compare.system": {"en": "system: {text}", "ja": "システム: {text}"},
    "compare.head": {"en": "{label} · temperature {temperature} · {system}",
                     "ja": "{label} · 温度 {temperature} · {system}"},
    "compare.no_reply": {"en": "no reply", "ja": "返答なし"},
    "compare.cached": {"en": "{n} cached", "ja": "{n} キャッシュ済み"},
    "compare.same": {"en": "Same model, other settings below",
                     "ja": "同じモデル、下の設定を変更"},
    "compare.same_int8": {"en": "Same model as cpu-int8 (a second, int8 copy)",
                          "ja": "同じモデルの cpu-int8 版 (2 つ目の int8 コピー)"},
    "compare.setup_title": {"en": "Compare {name} with…", "ja": "{name} と比較…"},
    "compare.temperature_hint": {"en": "Temperature (empty: as in the chat)",
                                 "ja": "温度 (空欄: チャットと同じ)"},
    "compare.system_hint": {"en": "System prompt (empty: as in the chat; '-' for none)",
                            "ja": "システムプロンプト (空欄: チャットと同じ、'-' でなし)"},
    "compare.adapter_hint": {"en": "LoRA adapter folder on the right model (optional)",
                             "ja": "右のモデルに載せる LoRA アダプターのフォルダー (任意)"},
    "compare.ok": {"en": "Compare", "ja": "比較"},
    "compare.bad_temperature": {"en": "temperature must be a number, not {text}",
                                "ja": "温度は数値で指定してください ({text} は数値ではありません)"},
    "compare.loading": {"en": "Compare — loading the right-hand model…",
                        "ja": "比較 — 右側のモデルを読み込んでいます…"},
    "compare.type_prompt": {"en": "Type a prompt: it goes to both sides.",
                            "ja": "プロンプトを入力してください。両側に送られます。"},
    "compare.load_failed": {"en": "Compare — the right-hand model did not load",
                            "ja": "比較 — 右側のモデルを読み込めませんでした"},
    "compare.esc_back": {"en": "Esc goes back to the chat.", "ja": "Esc でチャットに戻ります。"},
    "compare.schedule.parallel": {"en": "both at once, a share of the cores each",
                                  "ja": "両方を同時に、コアを分け合って"},
    "compare.schedule.interleaved": {"en": "interleaved token by token",
                                     "ja": "1 トークンずつ交互に"},
    "compare.ready": {"en": "Compare — each prompt goes to both sides ({how})",
                      "ja": "比較 — プロンプトは両側に送られます ({how})"},
    "compare.not_ready": {"en": "The right-hand model is not ready.",
                          "ja": "右側のモデルの準備ができていません。"},
    "compare.still_writing": {"en": "Both replies are still being written; Esc stops them.",
                              "ja": "両方の返答を生成中です。Esc で停止します。"},
    "compare.you": {"en": "You: {text}", "ja": "あなた: {text}"},
    "compare.writing": {"en": "Writing both replies… (Esc stops)",
                        "ja": "両方の返答を生成しています… (Esc で停止)"},
    "compare.not_saved": {"en": "could not save the reply: {error}",
                          "ja": "返答を保存できませんでした: {error}"},
    "compare.status.length": {"en": "token limit", "ja": "トークン上限"},
    "compare.status.stopped": {"en": "stopped", "ja": "停止"},
    "compare.status.error": {"en": "error", "ja": "エラー"},
    "compare.wait_both": {"en": "Wait for both replies (Esc stops them).",
                          "ja": "両方の返答が終わるまでお待ちください (Esc で停止)。"},
    "compare.nothing_to_keep": {"en": "Nothing to keep yet: type a prompt first.",
                                "ja": "採用する返答がまだありません。先にプロンプトを入力してください。"},
    "compare.kept.left": {
        "en": "Kept the left reply: the conversation continues from it (the other stays as "
              "an alternative). Type the next prompt, or Esc for the chat.",
        "ja": "左の返答を採用しました。会話はここから続きます (もう一方は別案として残ります)。"
              "次のプロンプトを入力するか、Esc でチャットに戻ります。"},
    "compare.kept.right": {
        "en": "Kept the right reply: the conversation continues from it (the other stays as "
              "an alternative). Type the next prompt, or Esc for the chat.",
        "ja": "右の返答を採用しました。会話はここから続きます (もう一方は別案として残ります)。"
              "次のプロンプトを入力するか、Esc でチャットに戻ります。"},
    "compare.wait_reply": {"en": "Wait for the reply to finish, or press Esc to stop it.",
                           "ja": "返答が終わるまでお待ちいただくか、Esc で停止してください。"},
    "compare.no_model": {"en": "No model is loaded yet.",
                         "ja": "モデルがまだ読み込まれていません。"},
    "compare.bad_settings": {"en": "Invalid chat settings", "ja": "チャット設定が正しくありません"},
    # --- the fine-tune panel's file picker (screens/file_pick.py) ---
    "pick.title": {"en": "Pick a .txt, .md or .jsonl file (or a folder of them)",
                   "ja": ".txt、.md、.jsonl ファイル (またはそれらのフォルダー) を選んでください"},
    "pick.use_folder": {"en": "Use folder", "ja": "このフォルダーを使う"},
    "key.pick.close": {"en": "Close", "ja": "閉じる"},
}
